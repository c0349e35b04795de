// A factory's camera through LiveKit: GET /livekit/token?room=<factory>, then the vendored
// livekit-client (vendor/livekit-client.umd.js, loaded only when LiveKit is configured).

import { ApiError, livekitToken } from "./api.js";

const LIVEKIT_SCRIPT = "vendor/livekit-client.umd.js";
let livekitLoading = null;

function loadLivekit() {
  if (window.LivekitClient) return Promise.resolve(window.LivekitClient);
  livekitLoading ??= new Promise((resolve, reject) => {
    const script = document.createElement("script");
    script.src = LIVEKIT_SCRIPT;
    script.onload = () => resolve(window.LivekitClient);
    script.onerror = () => {
      livekitLoading = null;
      reject(new Error("could not load livekit-client"));
    };
    document.head.append(script);
  });
  return livekitLoading;
}

export class VideoPanel {
  /** `onExpired` is called when the auth service no longer accepts the token. */
  constructor({ stage, status, title }, onExpired) {
    this.stage = stage;
    this.status = status;
    this.title = title;
    this.onExpired = onExpired;
    this.room = null;
    this.factory = null;
    this.generation = 0;
  }

  _say(text, kind = "info") {
    this.status.textContent = text;
    this.status.dataset.kind = kind;
  }

  /** Watch `factory`'s camera (or nothing, with `null`). */
  async show(token, factory) {
    if (factory === this.factory) return;
    const generation = ++this.generation;
    await this.disconnect();
    this.factory = factory;
    this.title.textContent = factory ? `Camera: ${factory}` : "Camera";
    if (!factory) {
      this._say("Select a factory in the table to watch its camera.");
      return;
    }
    this._say(`Asking for a video token for ${factory}…`);
    let grant;
    try {
      grant = await livekitToken(token, factory);
    } catch (error) {
      if (generation !== this.generation) return;
      if (error instanceof ApiError && error.status === 503) {
        this._say("Video unavailable: LiveKit is not configured on this deployment.", "unavailable");
      } else if (error instanceof ApiError && error.status === 401) {
        this._say(`Video unavailable: ${error.detail}`, "error");
        this.onExpired?.();
      } else {
        this._say(`Video unavailable: ${error.detail ?? error.message}`, "error");
      }
      return;
    }
    if (generation !== this.generation) return;
    try {
      await this._connect(grant, factory, generation);
    } catch (error) {
      if (generation === this.generation) this._say(`Video unavailable: ${error.message}`, "error");
    }
  }

  async _connect(grant, factory, generation) {
    this._say(`Connecting to ${factory}'s room…`);
    const LK = await loadLivekit();
    if (generation !== this.generation) return;
    const room = new LK.Room({ adaptiveStream: true, dynacast: false });
    this.room = room;
    room
      .on(LK.RoomEvent.TrackSubscribed, (track, _publication, participant) => {
        if (track.kind !== LK.Track.Kind.Video || participant.identity !== factory) return;
        const element = track.attach();
        element.muted = true;
        element.playsInline = true;
        this.stage.replaceChildren(element);
        this.stage.hidden = false;
        this._say(`Live: ${factory}`, "live");
      })
      .on(LK.RoomEvent.TrackUnsubscribed, (track) => {
        track.detach().forEach((element) => element.remove());
        this.stage.hidden = this.stage.childElementCount === 0;
        this._say(`${factory} stopped publishing its camera.`);
      })
      .on(LK.RoomEvent.Disconnected, () => {
        if (this.room === room) this._say(`Disconnected from ${factory}'s room.`, "error");
      });
    await room.connect(grant.url, grant.token, { autoSubscribe: true });
    if (this.room !== room) return;
    if (this.stage.childElementCount === 0) this._say(`Connected; waiting for ${factory}'s camera…`);
  }

  async disconnect() {
    const room = this.room;
    this.room = null;
    this.factory = null;
    this.stage.replaceChildren();
    this.stage.hidden = true;
    if (room) await room.disconnect();
  }
}
