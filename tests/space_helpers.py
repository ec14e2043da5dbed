"""A small parameter space shared by the protocol.space tests (test_space.py, test_space_json.py):
the clevr-like example, as a dict."""


def clevr_dict() -> dict:
    return {
        "format": "autosim.space",
        "version": 1,
        "name": "clevr",
        "params": [
            {"name": "key_light", "kind": "normal", "mean": [3.0], "log_std": [-0.5],
             "low": [0.0], "high": [10.0], "doc": "key light strength (W)"},
            {"name": "location", "kind": "normal", "mean": [0.5, -1.0], "log_std": [0.0, -1.0]},
            {"name": "material", "kind": "categorical", "choices": ["rubber", "metal", "glass"],
             "logits": [0.0, 0.5, -1.0]},
            {"name": "shadows", "kind": "bernoulli", "logit": 0.3, "fixed": True},
        ],
        "presets": {"validation": {"key_light": {"mean": [5.0]}, "shadows": {"logit": -2.0}}},
    }
