"""The switches of README "Behaviours of the original": one owner of their defaults and of what they change.

Each switch is a gin binding whose default is the original's behaviour (or, where the original's behaviour depended
on the machine, the one stated in the README). A run that sets one otherwise computes other artifacts from some
stage on; those artifacts get a name of their own (`tag`), so that two runs that differ in a switch never share an
artifact the switch changes, and a run with every switch at its default keeps exactly the original's names.

The stages, in the order in which each feeds the next:
  step0        the step-0 encoder and decoder (and JOINT's network)
  helpers      the helper decoders
  replay       the labelled replay files
  incremental  the mixed-label files, the incremental decoders (and encoders), the results file

A switch changes the artifacts of its first stage and of every later one.
"""
import gin

STAGES = ("step0", "helpers", "replay", "incremental")

# binding -> (default, first stage whose artifacts it changes)
SWITCHES = {
    "Training.train_batch_norm": (True, "step0"),
    "Training.momentum_rule": ("tf1", "step0"),
    "Training.input_order": ("original", "step0"),
    # Step 0 decays to its own final rate either way; the helpers and incremental steps end at another one.
    "Training.reproduce_lr_floor": (True, "helpers"),
    "Training.replay_label_input": ("raw", "replay"),
    # Labelled replay and (later stage) mixed-label files.
    "Training.reencode_jpeg": (True, "replay"),
    # Labelled replay and (later stage) mixed-label files: the pairing of images and labels through image folders.
    "Training.folder_pairing": ("creation_order", "replay"),
    # The mixed-label files (named after the decoder when True: TrainManager.get_mixed_train_paths), and so the
    # decoders and results trained on them.
    "TrainManager.mixed_labels_per_experiment": (False, "incremental"),
}

DEFAULTS = {name: default for name, (default, _) in SWITCHES.items()}


def bound_values():
    """{switch: value} as the current gin config binds them (the default where it binds none). The modules that
    register the switches (training, train_manager) must be imported."""
    values = {}
    for name in SWITCHES:
        try:
            values[name] = gin.query_parameter(name)
        except ValueError:  # not bound: the default
            values[name] = DEFAULTS[name]
    return values


def changed(values):
    """{switch: value} of the switches whose value differs from the default (type included: 1 is not True)."""
    return {name: values[name] for name, default in DEFAULTS.items()
            if name in values and (values[name] != default or type(values[name]) is not type(default))}


def _value_text(value):
    return str(value)


def tag(values, stage):
    """The name suffix of an artifact of `stage` made with the switch `values`: "" when every switch that acts
    on that stage or an earlier one has its default; else "__" + "name-value" of each such switch (the binding's
    argument name), joined by "__", in SWITCHES order. E.g. "__replay_label_input-mean_subtracted"."""
    if stage not in STAGES:
        raise ValueError(f"behaviours.tag: unknown stage {stage!r}; expected one of {STAGES}")
    upto = STAGES[:STAGES.index(stage) + 1]
    parts = [f"{name.split('.')[-1]}-{_value_text(value)}" for name, value in changed(values).items()
             if SWITCHES[name][1] in upto]
    return "".join("__" + p for p in parts)


def variant(values):
    """The name of a run's variant: "original" when every switch has its default, else the changed switches as
    "name = value" joined by "; " (the summary's `variant` column)."""
    diff = changed(values)
    if not diff:
        return "original"
    return "; ".join(f"{name} = {value!r}" for name, value in diff.items())
