// User administration for admins, through the auth service's /users API: list, create,
// change type, password and disabled, delete. Each refusal (409 taken name or last admin,
// 422 with its reason) is shown where it happened: under the form or in the user's row.

import { ApiError, createUser, deleteUser, listUsers, updateUser } from "./api.js";
import { sentence } from "./labels.js";

const PAGE_SIZE = 100;
const USER_TYPES = ["admin", "operator", "viewer", "factory"];
const DISARM_AFTER_MS = 5000;

function element(tag, properties = {}, children = []) {
  const node = Object.assign(document.createElement(tag), properties);
  node.append(...children);
  return node;
}

function messageOf(error) {
  return sentence(error instanceof ApiError ? error.detail : error.message);
}

export class UsersPanel {
  /**
   * `elements`: section, table body, create form and its error line, "more" button, total.
   * `session()` returns `{token, user}`; `onExpired()` when the token is refused (401).
   */
  constructor(elements, session, onExpired) {
    this.elements = elements;
    this.session = session;
    this.onExpired = onExpired;
    this.loaded = 0;
    this.total = 0;
    elements.form.addEventListener("submit", (event) => this._create(event));
    elements.more.addEventListener("click", () => this._loadPage(this.loaded));
  }

  /** Show the panel and load the first page of users. */
  async open() {
    this.elements.section.hidden = false;
    this.elements.rows.replaceChildren();
    this.loaded = 0;
    this._say(this.elements.formError, "");
    await this._loadPage(0);
  }

  close() {
    this.elements.section.hidden = true;
    this.elements.rows.replaceChildren();
    this.loaded = 0;
  }

  get _token() {
    return this.session().token;
  }

  _failed(error, where) {
    if (error instanceof ApiError && error.status === 401) {
      this.onExpired();
      return;
    }
    this._say(where, messageOf(error), "error");
  }

  _say(where, text, kind = "error") {
    where.textContent = text;
    where.dataset.kind = kind;
    where.hidden = !text;
  }

  async _loadPage(offset) {
    let page;
    try {
      page = await listUsers(this._token, { limit: PAGE_SIZE, offset });
    } catch (error) {
      this._failed(error, this.elements.formError);
      return;
    }
    if (offset === 0) this.elements.rows.replaceChildren();
    for (const user of page.items) this.elements.rows.append(this._row(user));
    this.loaded = offset + page.items.length;
    this.total = page.total;
    this._updateCount();
  }

  _updateCount() {
    const shown = this.elements.rows.childElementCount;
    this.elements.count.textContent = shown < this.total ? `(${shown} of ${this.total})` : `(${this.total})`;
    this.elements.more.hidden = this.loaded >= this.total;
  }

  async _create(event) {
    event.preventDefault();
    const form = this.elements.form;
    const data = Object.fromEntries(new FormData(form));
    const button = form.querySelector("button");
    button.disabled = true;
    this._say(this.elements.formError, "");
    try {
      const user = await createUser(this._token, data);
      form.reset();
      this.elements.rows.prepend(this._row(user));
      this.total += 1;
      this.loaded += 1;
      this._updateCount();
      this._say(this.elements.formError, `Created ${user.username} (${user.type}).`, "ok");
    } catch (error) {
      this._failed(error, this.elements.formError);
    } finally {
      button.disabled = false;
    }
  }

  /** One user's row: its controls act at once, and say so (or why not) in the row. */
  _row(user) {
    const row = element("tr");
    row.dataset.user = user.username;
    row.dataset.userId = user.id;
    const note = element("p", { className: "row-note", hidden: true });
    note.setAttribute("role", "status");
    const self = this.session().user?.id === user.id;

    const type = element(
      "select",
      { className: "user-type", title: `Type of ${user.username}` },
      USER_TYPES.map((name) => element("option", { value: name, textContent: name })),
    );
    type.value = user.type;
    type.addEventListener("change", () =>
      this._patch(row, note, { type: type.value }, () => (type.value = row.dataset.type)),
    );

    const disabled = element("input", { type: "checkbox", className: "user-disabled" });
    disabled.checked = user.disabled;
    disabled.addEventListener("change", () =>
      this._patch(row, note, { disabled: disabled.checked }, () => {
        disabled.checked = row.dataset.disabled === "true";
      }),
    );

    const password = element("input", {
      type: "password",
      className: "user-password",
      placeholder: "new password",
      autocomplete: "new-password",
      maxLength: 1024,
    });
    password.setAttribute("aria-label", `New password for ${user.username}`);
    const setPassword = element("button", { type: "button", className: "user-set-password", textContent: "Set" });
    setPassword.addEventListener("click", async () => {
      if (await this._patch(row, note, { password: password.value })) password.value = "";
    });

    const remove = element("button", { type: "button", className: "user-delete danger", textContent: "Delete" });
    remove.addEventListener("click", () => this._delete(row, note, remove));

    const name = element("th", { scope: "row" }, [user.username]);
    if (self) name.append(" ", element("span", { className: "tag", textContent: "you" }));
    row.append(
      name,
      element("td", {}, [type]),
      element("td", {}, [element("label", { className: "inline" }, [disabled, " disabled"])]),
      element("td", { className: "password-cell" }, [password, setPassword]),
      element("td", {}, [remove]),
      element("td", { className: "note-cell" }, [note]),
    );
    this._remember(row, user);
    return row;
  }

  _remember(row, user) {
    row.dataset.type = user.type;
    row.dataset.disabled = String(user.disabled);
    row.classList.toggle("disabled-user", user.disabled);
  }

  /** PATCH the user; on refusal undo the control (`revert`) and say why. True on success. */
  async _patch(row, note, changes, revert = () => {}) {
    this._say(note, "");
    try {
      const user = await updateUser(this._token, row.dataset.userId, changes);
      this._remember(row, user);
      const what = Object.keys(changes)[0];
      const done = what === "password" ? "Password changed." : `Saved: ${what} ${user[what]}.`;
      this._say(note, done, "ok");
      return true;
    } catch (error) {
      revert();
      this._failed(error, note);
      return false;
    }
  }

  /** Delete asks twice: the first click arms the button for a few seconds. */
  async _delete(row, note, button) {
    if (button.dataset.armed !== "true") {
      button.dataset.armed = "true";
      button.textContent = "Really delete?";
      setTimeout(() => {
        button.dataset.armed = "false";
        button.textContent = "Delete";
      }, DISARM_AFTER_MS);
      return;
    }
    this._say(note, "");
    try {
      await deleteUser(this._token, row.dataset.userId);
      row.remove();
      this.total -= 1;
      this.loaded -= 1;
      this._updateCount();
    } catch (error) {
      this._failed(error, note);
    }
  }
}
