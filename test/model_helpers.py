"""Shared model set-up for tests that need a real exported network (imported like ``pq_random``)."""

from __future__ import annotations


def default_or_untrained_model_info(tmp_path_factory):
    """ModelInfo of the default model (models/default); until it lands, a freshly initialised network of
    the same architecture saved with model_store.save_model (same export path, same ONNX contract)."""
    from panoptic_ros.families.model_store import ModelError, load_model_info

    try:
        return load_model_info("default")
    except ModelError:
        import torch

        from panoptic_ros.core.synthetic import generate_scene
        from panoptic_ros.families.model_store import save_model
        from panoptic_ros.families.panoptic_net import (
            ARCH_DEFAULTS,
            DEFAULT_MEAN,
            DEFAULT_STD,
            build_net,
        )

        torch.manual_seed(0)
        tax = generate_scene(0, 32, 32).taxonomy
        d = tmp_path_factory.mktemp("model") / "untrained"
        save_model(
            d,
            build_net(tax.num_classes),
            tax,
            input_size=(96, 128),
            top_k=16,
            arch=dict(ARCH_DEFAULTS),
            mean=DEFAULT_MEAN,
            std=DEFAULT_STD,
        )
        return load_model_info(d)


def weights_only_copy(dest):
    """Copy of models/default at ``dest`` without its shipped ONNX export, for tests of the
    on-demand export and its cache (with the shipped file the store never exports)."""
    import shutil

    from panoptic_ros.families.model_store import default_model_dir

    return shutil.copytree(default_model_dir(), dest, ignore=shutil.ignore_patterns("model-*.onnx"))
