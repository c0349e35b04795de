"""`kubectl kustomize`, for the parts of it deploy/kubernetes uses, in Python.

The tests check what a kustomization renders, on machines with or without kubectl. This
covers exactly the features the project's kustomizations use, and fails loudly on any
other: `resources` (files and directories), `components`, `namespace`, `images`,
`patches` (JSON 6902 `replace`/`add` with a kind/name target), `configMapGenerator`
(`envs`, `literals`, `options.labels`, the content-hash name suffix and the references
to it in pod templates) and `labels` (without selectors). Where kubectl is installed,
`test_kubernetes.py` checks this renders what it renders, hash suffixes aside.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

Manifest = dict[str, Any]

KNOWN_FIELDS = frozenset(
    {
        "apiVersion",
        "kind",
        "namespace",
        "resources",
        "components",
        "images",
        "patches",
        "configMapGenerator",
        "labels",
    }
)
CLUSTER_SCOPED = frozenset({"Namespace"})
HASH_ALPHABET = str.maketrans("013ae", "ghkmt")
"""kustomize's: no vowels or look-alike digits, so a suffix never spells a word."""


def render(directory: Path) -> list[Manifest]:
    """The documents `kubectl kustomize directory` prints, in no particular order."""
    documents, generated = _build(directory)
    _rename_references(documents, generated)
    return documents


def _load(path: Path) -> Iterator[Manifest]:
    for document in yaml.safe_load_all(path.read_text()):
        if document is not None:
            yield document


def _kustomization(directory: Path) -> Manifest:
    loaded: Manifest = yaml.safe_load((directory / "kustomization.yaml").read_text())
    unknown = set(loaded) - KNOWN_FIELDS
    if unknown:
        raise NotImplementedError(f"{directory}: this renderer lacks {sorted(unknown)}")
    return loaded


def _build(directory: Path) -> tuple[list[Manifest], dict[str, str]]:
    kustomization = _kustomization(directory)
    documents: list[Manifest] = []
    generated: dict[str, str] = {}
    for entry in kustomization.get("resources", []):
        path = directory / entry
        if path.is_dir():
            nested, names = _build(path)
            documents.extend(nested)
            generated.update(names)
        else:
            documents.extend(_load(path))
    for generator in kustomization.get("configMapGenerator", []):
        config_map = _generate_config_map(directory, generator)
        generated[generator["name"]] = config_map["metadata"]["name"]
        documents.append(config_map)
    layers = [kustomization] + [
        _kustomization(directory / component) for component in kustomization.get("components", [])
    ]
    for layer in layers:
        for document in documents:
            _apply(layer, document)
    return documents, generated


def _apply(layer: Manifest, document: Manifest) -> None:
    if "namespace" in layer and document["kind"] not in CLUSTER_SCOPED:
        document["metadata"]["namespace"] = layer["namespace"]
    for label in layer.get("labels", []):
        if label.get("includeSelectors", False):
            raise NotImplementedError("labels with includeSelectors")
        document["metadata"].setdefault("labels", {}).update(label["pairs"])
    for image in layer.get("images", []):
        for container in containers(document):
            if container["image"].split(":")[0].split("@")[0] == image["name"]:
                container["image"] = _image(image)
    for patch in layer.get("patches", []):
        target = patch["target"]
        if (document["kind"], document["metadata"]["name"]) == (target["kind"], target["name"]):
            for operation in yaml.safe_load(patch["patch"]):
                _json_patch(document, operation)


def _image(image: Manifest) -> str:
    reference = str(image.get("newName", image["name"]))
    if "newTag" in image:
        reference += f":{image['newTag']}"
    if "digest" in image:
        reference += f"@{image['digest']}"
    return reference


def _json_patch(document: Manifest, operation: Manifest) -> None:
    if operation["op"] not in ("replace", "add"):
        raise NotImplementedError(f"patch op {operation['op']}")
    *parents, last = operation["path"].strip("/").split("/")
    node: Any = document
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    if isinstance(node, list):
        node.insert(int(last), operation["value"])
    else:
        node[last] = operation["value"]


def read_env_file(path: Path) -> dict[str, str]:
    """kustomize's reading of an `envs` file: KEY=value lines, `#` comments, no unquoting."""
    values = {}
    for line in path.read_text().splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        key, separator, value = stripped.partition("=")
        if not separator:
            raise ValueError(f"{path}: {line!r} is not KEY=value")
        values[key] = value
    return values


def _generate_config_map(directory: Path, generator: Manifest) -> Manifest:
    data: dict[str, str] = {}
    for env_file in generator.get("envs", []):
        data.update(read_env_file(directory / env_file))
    for literal in generator.get("literals", []):
        key, _, value = literal.partition("=")
        data[key] = value
    metadata: Manifest = {"name": f"{generator['name']}-{content_hash(data)}"}
    labels = generator.get("options", {}).get("labels")
    if labels:
        metadata["labels"] = dict(labels)
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata, "data": data}


def content_hash(data: dict[str, str]) -> str:
    """Ten characters of a SHA-256 of the content, in kustomize's alphabet."""
    encoded = json.dumps(data, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(encoded).hexdigest()[:10].translate(HASH_ALPHABET)


def pod_spec(document: Manifest) -> Manifest | None:
    spec = document.get("spec", {})
    if "jobTemplate" in spec:
        spec = spec["jobTemplate"]["spec"]
    template = spec.get("template")
    return None if template is None else template.get("spec")


def containers(document: Manifest) -> list[Manifest]:
    pod = pod_spec(document)
    if pod is None:
        return []
    return [*pod.get("initContainers", []), *pod.get("containers", [])]


def _rename_references(documents: list[Manifest], generated: dict[str, str]) -> None:
    """Point envFrom, env valueFrom and volumes at the generated (hash-suffixed) names."""
    for document in documents:
        pod = pod_spec(document)
        if pod is None:
            continue
        for container in containers(document):
            for source in container.get("envFrom", []):
                _rename(source.get("configMapRef"), generated)
            for variable in container.get("env", []):
                _rename(variable.get("valueFrom", {}).get("configMapKeyRef"), generated)
        for volume in pod.get("volumes", []):
            _rename(volume.get("configMap"), generated)


def _rename(reference: Manifest | None, generated: dict[str, str]) -> None:
    if reference is not None and reference.get("name") in generated:
        reference["name"] = generated[reference["name"]]


def normalized(documents: list[Manifest], generated_names: set[str]) -> dict[str, Manifest]:
    """Documents by kind/name, the generated names' hash suffixes replaced by `<hash>`:
    for comparing two renderings that may hash differently."""

    def strip(node: Any) -> Any:
        if isinstance(node, dict):
            return {key: strip(value) for key, value in node.items()}
        if isinstance(node, list):
            return [strip(item) for item in node]
        if isinstance(node, str):
            for name in generated_names:
                if node.startswith(f"{name}-") and len(node) == len(name) + 11:
                    return f"{name}-<hash>"
        return node

    result = {}
    for document in documents:
        stripped = strip(copy.deepcopy(document))
        result[f"{stripped['kind']}/{stripped['metadata']['name']}"] = stripped
    return result
