"""The kustomize overlays render (with a test-side renderer of the features they use, checked
against `kubectl kustomize` where kubectl is installed) and the result validates strictly;
the YAML writer round-trips through PyYAML."""

from __future__ import annotations

import copy
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from moderntensor.deploy._k8s_overlays import OVERLAYS
from moderntensor.deploy._k8s_yaml import dump_yaml
from tests.deploy.test_k8s import (
    kubernetes_validate,
    load_docs,
    make_faucet_testnet,
    make_testnet,
)

# Lists that strategic merge patches merge by a key (Kubernetes' patchMergeKey); every other
# list in a patch replaces the list it patches (volumeClaimTemplates has no merge key).
MERGE_KEYS = {"containers": "name", "volumes": "name", "volumeMounts": "mountPath", "env": "name"}


def strategic_merge(base: Any, patch: Any) -> Any:
    if not (isinstance(base, dict) and isinstance(patch, dict)):
        return copy.deepcopy(patch)
    out = copy.deepcopy(base)
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        elif key in MERGE_KEYS and isinstance(value, list) and isinstance(out.get(key), list):
            merged = out[key]
            for item in value:
                index = next(
                    (i for i, old in enumerate(merged)
                     if old.get(MERGE_KEYS[key]) == item[MERGE_KEYS[key]]),
                    None,
                )  # fmt: skip
                if index is None:
                    merged.append(copy.deepcopy(item))
                else:
                    merged[index] = strategic_merge(merged[index], item)
        elif key in out:
            out[key] = strategic_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _matches(doc: dict[str, Any], target: dict[str, str]) -> bool:
    for field, wanted in target.items():
        if field == "kind" and doc["kind"] != wanted:
            return False
        if field == "name" and doc["metadata"]["name"] != wanted:
            return False
        if field == "labelSelector":
            found = re.fullmatch(r"([\w./-]+) in \(([\w,-]+)\)", wanted)
            assert found, f"selector {wanted!r} is not one this renderer knows"
            label = doc["metadata"].get("labels", {}).get(found.group(1))
            if label not in found.group(2).split(","):
                return False
        elif field not in ("kind", "name"):
            raise AssertionError(f"target field {field!r} is not one this renderer knows")
    return True


def render(directory: Path) -> list[dict[str, Any]]:
    """kustomize build for ``resources`` and strategic-merge ``patches`` (all the overlays use;
    anything else fails loudly rather than being ignored)."""
    (kustomization,) = load_docs(directory / "kustomization.yaml")
    unknown = set(kustomization) - {"apiVersion", "kind", "resources", "patches"}
    assert not unknown, f"{directory}: renderer does not know {unknown}"
    docs: list[dict[str, Any]] = []
    for resource in kustomization["resources"]:
        path = directory / resource
        docs += render(path) if path.is_dir() else load_docs(path)
    for patch_ref in kustomization.get("patches", []):
        assert set(patch_ref) <= {"path", "target"}
        (patch,) = load_docs(directory / patch_ref["path"])
        target = patch_ref.get("target") or {
            "kind": patch["kind"],
            "name": patch["metadata"]["name"],
        }
        body = {k: v for k, v in patch.items() if k not in ("apiVersion", "kind", "metadata")}
        hits = [i for i, doc in enumerate(docs) if _matches(doc, target)]
        assert hits, f"patch {patch_ref} matches nothing"
        for i in hits:
            docs[i] = strategic_merge(docs[i], body)
    return docs


def by_id(docs: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(d["kind"], d["metadata"]["name"]): d for d in docs}


@pytest.fixture(scope="module", params=[1, 4, 7, "4+faucet"], ids=lambda n: f"N={n}")
def net(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    if request.param == "4+faucet":  # the faucet's StatefulSet is left as it is
        return make_faucet_testnet(tmp_path_factory.mktemp("overlays"), 4)
    return make_testnet(tmp_path_factory.mktemp("overlays"), request.param)


@pytest.mark.parametrize("overlay", OVERLAYS, ids=lambda o: o.name)
def test_overlay_renders_validates_and_sizes(net: Path, overlay: Any, tmp_path: Path) -> None:
    base = by_id(render(net / "k8s" / "base"))
    rendered = render(net / "k8s" / "overlays" / overlay.name)
    out = tmp_path / f"{overlay.name}.yaml"
    out.write_text(dump_yaml(rendered))
    done = kubernetes_validate(out)
    assert done.returncode == 0, done.stdout + done.stderr
    docs = by_id(rendered)
    assert docs.keys() == base.keys()  # an overlay adds and removes nothing
    for (kind, name), doc in docs.items():
        if kind != "StatefulSet" or name == "faucet":
            assert doc == base[(kind, name)]
            continue
        size = overlay.fullnode if name == "fullnode" else overlay.validator
        (container,) = doc["spec"]["template"]["spec"]["containers"]
        assert container["resources"] == size.container()
        assert doc["spec"]["volumeClaimTemplates"] == [size.claim()]
        assert doc["spec"]["replicas"] == (overlay.replicas if name == "fullnode" else 1)
        # the rest of the pod is the base's: probes, mounts, security context
        old = base[(kind, name)]["spec"]["template"]["spec"]["containers"][0]
        assert {k: v for k, v in container.items() if k != "resources"} == {
            k: v for k, v in old.items() if k != "resources"
        }
    budget = docs[("PodDisruptionBudget", "validators")]["spec"]["maxUnavailable"]
    assert budget == base[("PodDisruptionBudget", "validators")]["spec"]["maxUnavailable"]


KUBECTL = shutil.which("kubectl")


@pytest.mark.skipif(
    KUBECTL is None, reason="kubectl is not installed (its kustomize checks the renderer)"
)
@pytest.mark.parametrize("where", ["base", "overlays/small", "overlays/large"])
def test_renderer_agrees_with_kubectl_kustomize(tmp_path: Path, where: str) -> None:
    net = make_faucet_testnet(tmp_path, 4)
    assert KUBECTL is not None
    done = subprocess.run(
        [KUBECTL, "kustomize", str(net / "k8s" / where)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    theirs = by_id([d for d in yaml.safe_load_all(done.stdout) if d])
    assert theirs == by_id(render(net / "k8s" / where))


_text = st.text(
    st.characters(blacklist_categories=("Cs",)) | st.sampled_from("\n :#-\"'|>"), max_size=20
)
_scalars = st.none() | st.booleans() | st.integers(-(10**12), 10**12) | _text
_values = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_text, inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.dictionaries(_text, _values, min_size=1, max_size=4), min_size=1, max_size=3))
def test_yaml_writer_round_trips(documents: list[dict[str, Any]]) -> None:
    text = dump_yaml(documents, header="a header\nof two lines")
    assert [d for d in yaml.safe_load_all(text)] == documents


def test_yaml_writer_quotes_what_yaml_would_change() -> None:
    doc = {"a": "8545", "b": "true", "c": "1Gi", "d": "no", "e": "x: y", "f": "- x", "g": "#"}
    doc |= {"h": "line\n", "i": "two\nlines", "j": " lead\nspace", "k": "", "l": "~"}
    assert yaml.safe_load(dump_yaml([doc])) == doc
