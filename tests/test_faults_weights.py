"""A pretrained backbone whose weights file is not on this machine: the launch tries the download once,
then names the file to supply, before any run folder is made. The network is a local proxy that counts
the connections and refuses each, so the tests need no internet and see every try."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from agelab.config import ConfigError, checked_config
from agelab.paths import PROJECT_ROOT
from tests.real_data import copy_real_images


class RefusingProxy:
    """An HTTP(S) proxy on 127.0.0.1 that counts the connections made to it and closes each at once."""

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.address = f"http://127.0.0.1:{self.server.getsockname()[1]}"
        self.connections = 0
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:  # closed
                return
            self.connections += 1
            client.close()

    def close(self) -> None:
        self.server.close()


@pytest.fixture
def offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[RefusingProxy]:
    """An empty KERAS_HOME, and every download through a proxy that refuses it."""
    proxy = RefusingProxy()
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    for name in ("https_proxy", "HTTPS_PROXY", "http_proxy", "HTTP_PROXY"):
        monkeypatch.setenv(name, proxy.address)
    for name in ("no_proxy", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
    yield proxy
    proxy.close()


@pytest.fixture
def few_images(utkface_dir: Path, tmp_path: Path) -> Path:
    return copy_real_images(utkface_dir, tmp_path / "utk", 30, step=600)[0].parent


@pytest.mark.parametrize(
    ("model", "file"),
    [
        ("resnet50", "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"),
        ("vgg16", "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"),
        ("efficientnetb0", "efficientnetb0_notop.h5"),
    ],
)
def test_a_launch_without_the_weights_file_names_it_after_one_try(
    model, file, few_images, isolated_dirs, offline
):
    with pytest.raises(ConfigError) as caught:
        checked_config({"model": model, "data": str(few_images)})
    message = str(caught.value)
    assert "\n" not in message and file in message and "python -m agelab setup" in message
    assert str(isolated_dirs / "keras" / "models") in message and "weights=none" in message
    assert offline.connections == 1
    assert not (isolated_dirs / "keras" / "models" / file).exists()  # nothing half-downloaded left


def test_the_train_command_without_resnet50_weights_makes_no_run_folder(few_images, isolated_dirs, offline):
    done = subprocess.run(
        [sys.executable, "-m", "agelab", "train", f"data={few_images}", "model=resnet50", "name=r50"],
        capture_output=True,
        text=True,
        cwd=PROJECT_ROOT,
        env=dict(os.environ),
        timeout=300,
    )
    assert done.returncode == 2, done.stderr[-3000:]
    said = [line for line in done.stderr.splitlines() if line.startswith("agelab train:")]
    assert len(said) == 1 and "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5" in said[0]
    assert "Traceback" not in done.stderr
    assert offline.connections == 1
    assert not (isolated_dirs / "runs").exists() or not any((isolated_dirs / "runs").iterdir())


def test_weights_on_this_machine_are_used_without_the_network(isolated_dirs, offline, few_images):
    from agelab.backbone_weights import weights_file
    from agelab.models import create_model

    with pytest.MonkeyPatch.context() as project:
        project.delenv("KERAS_HOME")
        shipped = weights_file("mobilenet_v2", 0.35)
    if not shipped.is_file():
        pytest.skip(f"no {shipped.name} here: run `python -m agelab setup`")
    local = weights_file("mobilenet_v2", 0.35)
    local.parent.mkdir(parents=True)
    shutil.copy2(shipped, local)

    checked_config({"model": "mobilenet_v2", "alpha": 0.35, "data": str(few_images)})
    built = create_model("mobilenet_v2", 112, 10, alpha=0.35, weights="imagenet")
    assert built.backbone is not None and offline.connections == 0
