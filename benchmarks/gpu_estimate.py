"""Convolution FLOPs of the paper's experiments on Pascal VOC (or ADE20K), and the time they take at a stated
throughput. An ESTIMATE: nothing here runs on a GPU.

    python -m benchmarks.gpu_estimate [--tflops 40] [--configs DISJOINT,...] [--test_type ...]
    python -m benchmarks.gpu_estimate --dataset ade20k --images_per_class 1150   # ADE20K's sweep (main.py's)

For every experiment of the sweep (sweep.plan, the paper's configs under config/), the FLOPs of each stage
from the configs' own schedules (TrainManager.*_schedule: steps x batch_size images) and the per-image counts
of bench_perf.conv_flops (DeepLab-V2 ResNet-101; see bench_perf's docstring for what a step counts):
  step 0        first_step_schedule().steps x batch images, encoder + decoder trained (3x forward - conv1's
                input gradient)
  helpers       helper_schedule(k).steps x batch images, decoder only (encoder forward + 2x decoder forward)
  incremental   incremental_schedule(k).steps x batch images per step, decoder only (RECALL, fine-tuning);
                encoder + decoder for the baselines that train the encoder; the baselines (LwF, ILT, MiB,
                PLOP) add the previous model's forward pass per image
  labelling     one forward pass per replay image of every labelled class (--replay_per_class images of
                --replay_size; the original used a few hundred GAN images and ~1000 web images per class)
  label mixing  one forward pass per training image of a step, --images_per_class x new classes (Pascal VOC
                train_aug: 10,582 images with ~1.4 labelled classes each, ~740 per class; the protocols'
                filters keep fewer, so this is an upper bound)
  validation    one forward pass per validation image, at 500x375: val_1..val_L for a step whose last class is
                L, estimated as 1449 x L / 20 images; on ADE20K every step reads nearly all 2,000 validation
                images (an image holds 8-9 classes), at an assumed 512x683
The decoder's FLOPs follow the configs' n_classes (ADE20K's 151 outputs make ASPP's four 3x3 convolutions 7x
VOC's 21). ADE20K's label mixing: about 1,150 training images per class (20,210 images x 8.5 classes / 150).
A sweep counts each artifact once, as the run reuses it by name (step-0 checkpoints, helpers, labelled replay,
mixed labels, decoders); validation belongs to each experiment. Times are FLOPs / (--tflops x 1e12): the
sustained convolution throughput is an assumption to replace with a measured one (bench_perf on the GPU).
"""
import runtime  # noqa: F401  (first, before TensorFlow: oneDNN kernels on every x86 CPU)
import collections
import os

from absl import app, flags

from benchmarks import bench_perf
import main  # defines main.py's flags, which this script reads (--configs, --test_type, --dataset ...)
import model
import sweep

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# dataset -> (validation images, their assumed (height, width)): VOC 2012 val's 1449 at its common 500x375, ADE20K's
# 2000 at an assumed 683x512. A step reads the share L / n_classes of them on VOC (val_k grouped by highest class),
# nearly all on ADE20K (grouped by lowest class: every image with a seen class; README "ADE20K").
VALIDATION = {"voc": (1449, (375, 500)), "ade20k": (2000, (512, 683))}


def define_flags():
    """Defines the command-line flags (only when run as a script)."""
    flags.DEFINE_float("tflops", 40.0, "assumed sustained convolution throughput of the GPU, TFLOP/s (e.g. "
                       "mixed precision on an A100-class GPU at about a third of its tensor-core peak)")
    # --configs, --test_type and --replay_source are main.py's own flags (defined when main is imported).
    flags.DEFINE_integer("replay_per_class", 500, "replay images labelled per class")
    flags.DEFINE_list("replay_size", ["512", "512"], "height,width of a replay image (BigGAN-deep 512: 512,512)")
    flags.DEFINE_integer("images_per_class", 740, "training images of a step per new class (label mixing)")


def per_image_flops(sizes, n_classes=21):
    """Forward convolution FLOPs per image of the full network (n_classes outputs) at each (height, width) of
    `sizes`, and the training FLOPs per image at the configs' crop. Returns dict."""
    seg = model.Segmenter(n_classes, encoder=model.build_encoder(units=(3, 4, 23, 3), width=1.0))
    out = {}
    for size in sizes:
        flops = bench_perf.conv_flops(seg, size)
        out[("forward",) + tuple(size)] = flops["encoder"] + flops["decoder"]
    return seg, out


def stages(m, flops, crop, replay_size, replay_per_class, images_per_class):
    """(artifact key, stage kind, FLOPs) of every stage of one experiment (TrainManager m)."""
    batch = m.common.batch_size
    train = bench_perf.step_flops(flops[crop], "encoder+decoder", batch)
    decoder = bench_perf.step_flops(flops[crop], "decoder", batch)
    forward = flops[("forward",) + tuple(replay_size)]
    val_images, val_size = VALIDATION[m.dataset.name]
    read_all = m.dataset.validation_group == "lowest"
    forward_val = flops[("forward",) + val_size]
    out = [(m.get_encoder_path(), "step 0", m.first_step_schedule().steps * train)]
    if m.uses_replay():
        for classes, path in zip(m.get_helpers_classes(), m.get_helper_out_paths()):
            out.append((path, "helpers", m.helper_schedule(len(classes)).steps * decoder))
        out += [(path, "labelling", replay_per_class * forward) for path in m.get_replay_output_paths()]
    for step in range(1, len(m.get_decoder_paths())):
        new = m.get_new_classes_for_incremental_step(step)
        if m.mix_labels():
            out.append((m.get_mixed_train_paths()[step], "label mixing",
                        len(new) * images_per_class * forward_val))
        per_step = train if getattr(m.incremental, "train_encoder", False) else decoder
        if getattr(m.incremental, "method", "recall") != "recall":  # the previous model's forward pass too
            per_step += batch * (flops[crop]["encoder"] + flops[crop]["decoder"])
        out.append((m.get_decoder_paths()[step], "incremental", m.incremental_schedule(len(new)).steps * per_step))
    for step, paths in enumerate(m.get_val_paths()):
        share = 1.0 if read_all else len(paths) / m.dataset.n_classes
        out.append(((m.get_validation_file_path(), step), "validation", val_images * share * forward_val))
    return out


def estimate(runs, tflops, replay_size, replay_per_class, images_per_class, config_dir=None):
    """Per-experiment rows and the sweep's totals by stage (each artifact once). Returns (rows, totals)."""
    config_dir = config_dir or os.path.join(ROOT, "config")
    replay_size = tuple(replay_size)
    m0 = _manager(runs[0], config_dir)
    seg, flops = per_image_flops([VALIDATION[m0.dataset.name][1], replay_size], m0.common.n_classes)
    crop = m0.common.train_image_size
    flops[crop] = bench_perf.conv_flops(seg, crop)
    rows, seen, totals = [], set(), collections.Counter()
    for config, test_type, source, _ in runs:
        m = _manager((config, test_type, source), config_dir)
        by_kind = collections.Counter()
        for key, kind, f in stages(m, flops, crop, replay_size, replay_per_class, images_per_class):
            by_kind[kind] += f
            if key not in seen:
                seen.add(key)
                totals[kind] += f
        total = sum(by_kind.values())
        rows.append({"config": config, "setup": m.short_name(), "source": source if m.uses_replay() else "-",
                     "pflop": total / 1e15, "hours": total / (tflops * 1e12) / 3600,
                     "step 0 share": by_kind["step 0"] / total})
    return rows, totals


def _manager(run, config_dir):
    """The TrainManager of run (config, test_type, replay_source, ...), with its config's bindings only."""
    config, test_type, source = run[:3]
    return sweep.Experiment(config, test_type, source, files=(os.path.join(config_dir, config + ".gin"),)).manager()


def main_(argv):
    del argv
    f = flags.FLAGS
    benchmark = "ade20k" if f.benchmark == "ade20k" else "voc"
    config_dir, configs, setups, method_setups = main.selection(benchmark)
    if benchmark == "voc":  # the paper's sweep: every config on every setup given
        method_setups = None
    runs = sweep.plan(configs, setups, f.replay_source, config_dir, method_test_types=method_setups,
                      dataset=benchmark)
    rows, totals = estimate(runs, f.tflops, [int(v) for v in f.replay_size], f.replay_per_class,
                            f.images_per_class, config_dir)
    print(f"ESTIMATE at an assumed {f.tflops:g} TFLOP/s sustained (convolution FLOPs only)\n")
    print("| config | setup | source | PFLOP | hours alone | step 0 share |\n|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['config']} | {r['setup']} | {r['source']} | {r['pflop']:.1f} | {r['hours']:.2f} | "
              f"{r['step 0 share']:.0%} |")
    total = sum(totals.values())
    print(f"\nthe sweep ({len(rows)} experiments, each shared artifact once): {total / 1e15:.1f} PFLOP, "
          f"{total / (f.tflops * 1e12) / 3600:.1f} hours on one GPU")
    for kind, value in totals.most_common():
        print(f"  {kind}: {value / 1e15:.1f} PFLOP ({value / total:.0%})")


if __name__ == "__main__":
    define_flags()
    app.run(main_)
