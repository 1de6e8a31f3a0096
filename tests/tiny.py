"""Tiny hyper-parameters shared by the adapter tests: every model in a fraction of a second."""
TINY_MODELS = {
    "lenet5": {},
    "lenet5-classic": {},
    "alexnet": {"image_size": 96, "width": 0.125, "classes": 10},  # 96: a 2x2 map before fc6
    "lstm": {"vocab": 50, "embed": 8, "hidden": 4, "layers": 2, "seq_len": 5},
    "gru": {"vocab": 50, "embed": 8, "hidden": 4, "layers": 2, "seq_len": 5},
}
