"""PropertyGroups that mirror a ParameterSpace: `bpy.types.Scene.autosim` (AutosimSettings).

One AutosimParam per parameter, holding its distribution the way an artist thinks about it:

    normal       per component: mean, std (shown) and log_std (stored; what psi holds)
    categorical  per choice: prob (shown, 0..1) and logit (stored; what psi holds)
    bernoulli    prob (shown) and logit (stored)
    every kind   fixed: the "optimise / fixed" toggle (ParameterSpace free_mask)

`space_to_props(space, settings)` and `props_to_space(settings, base_space)` are the heart and
touch nothing but attributes and collections (`.add()`, `.clear()`, `len`, indexing), so they
also run on plain-Python stand-ins. Round trip: `props_to_space(space_to_props(s)).psi` equals
`s.psi` rounded to float32 (Blender stores FloatProperty as float32), bit for bit: the stored
mean / log_std / logit values are read back, never re-derived from the shown std or prob. So
|error| <= 2**-24 * |psi_i| per entry (relative 6e-8), and `fixed` round-trips exactly.

Artist edits: changing a shown std sets log_std = log(std) (clamped to LOG_STD_RANGE); changing
one choice's prob rescales the other choices to keep the sum at 1 and sets logits = log(p)
(p floored at PROB_FLOOR so logits stay finite); a typed logit (the "logits" view) updates the
shown probabilities. Programmatic fills run inside `filling()`, and every update callback
returns at once while filling, so a fill never recurses or re-derives. After a real artist
edit the functions in EDIT_HOOKS are called with the Scene (source.save_edits, installed by
authoring_ops.py, stores it in the file's description; live.push_edit, installed by
operators.py, pushes it to a running render server). The maths is in probs.py.

AutosimBinding mirrors the description's bindings for the list (source.show fills them), and
AutosimSettings also holds the list's selection and filter, the preview, dataset and server.
"""

import contextlib
import math
from dataclasses import replace

import bpy
from bpy.props import (
    BoolProperty,
    CollectionProperty,
    EnumProperty,
    FloatProperty,
    IntProperty,
    PointerProperty,
    StringProperty,
)
from bpy.types import PropertyGroup

from protocol.space import (
    LOG_STD_RANGE,
    BernoulliParam,
    CategoricalParam,
    NormalParam,
    ParameterSpace,
    SpaceError,
)

from .preferences import DEFAULT_ADDRESS
from .probs import (  # noqa: F401  (re-exported: the panel's maths lives in probs.py)
    PROB_FLOOR,
    clamp_log_std,
    logit_from_prob,
    logits_from_probs,
    renormalised,
    sigmoid,
    softmax,
)
from .scenes import SCENE_NAMES, space_dict

WATCH_ADDRESS = "tcp://127.0.0.1:5556"
STD_MIN, STD_MAX = math.exp(LOG_STD_RANGE[0]), math.exp(LOG_STD_RANGE[1])

EDIT_HOOKS: list = []  # callables(scene) run after an artist edit (not during fills)
_filling = 0


@contextlib.contextmanager
def filling():
    """Programmatic writes inside this block trigger no update-callback logic."""
    global _filling
    _filling += 1
    try:
        yield
    finally:
        _filling -= 1


def is_filling() -> bool:
    return _filling > 0


# ------------------------------------------------------------------------------ mirror


def _structure_matches(space: ParameterSpace, settings) -> bool:
    if len(settings.params) != len(space.params):
        return False
    for item, p in zip(settings.params, space.params):
        if item.name != p.name or item.kind != p.kind:
            return False
        if isinstance(p, NormalParam) and len(item.components) != p.dim:
            return False
        if isinstance(p, CategoricalParam) and [c.name for c in item.choices] != list(p.choices):
            return False
    return True


def _fill_param(item, p) -> None:
    item.fixed = bool(p.fixed)
    if isinstance(p, NormalParam):
        for i, comp in enumerate(item.components):
            comp.mean = p.mean[i]
            comp.log_std = p.log_std[i]
            comp.std = math.exp(p.log_std[i])
    elif isinstance(p, CategoricalParam):
        for ch, logit, prob in zip(item.choices, p.logits, softmax(list(p.logits))):
            ch.logit = logit
            ch.prob = prob
    elif isinstance(p, BernoulliParam):
        item.logit = p.logit
        item.prob = sigmoid(p.logit)


def _build_param(item, p) -> None:
    item.name = p.name
    item.kind = p.kind
    item.doc = p.doc
    if isinstance(p, NormalParam):
        for i in range(p.dim):
            comp = item.components.add()
            comp.name = f"{p.name}[{i}]" if p.dim > 1 else p.name
            comp.has_low, comp.has_high = p.low is not None, p.high is not None
            comp.low = p.low[i] if p.low is not None else 0.0
            comp.high = p.high[i] if p.high is not None else 0.0
    elif isinstance(p, CategoricalParam):
        for c in p.choices:
            item.choices.add().name = c


def space_to_props(space: ParameterSpace, settings) -> None:
    """Show `space` in `settings` (values in place when the structure already matches, else the
    parameter list is rebuilt); keeps the space as the base for props_to_space. No update
    callback reacts to these writes."""
    with filling():
        if not _structure_matches(space, settings):
            settings.params.clear()
            for p in space.params:
                _build_param(settings.params.add(), p)
        for item, p in zip(settings.params, space.params):
            _fill_param(item, p)
        settings.space_json = space.to_json()
        settings.space_name = space.name


def props_to_space(settings, base_space: ParameterSpace) -> ParameterSpace:
    """The distribution the props show, on the structure of `base_space` (bounds, choices, docs,
    presets). SpaceError when the props do not mirror base_space or hold invalid values."""
    if not _structure_matches(base_space, settings):
        raise SpaceError(f"the panel's parameters {[i.name for i in settings.params]} do not "
                         f"match the space {base_space.name!r} ({base_space.names})")
    params = []
    for item, p in zip(settings.params, base_space.params):
        fixed = bool(item.fixed)
        if isinstance(p, NormalParam):  # replace keeps bounds, doc and active_if
            params.append(replace(p, mean=[float(c.mean) for c in item.components],
                                  log_std=[float(c.log_std) for c in item.components],
                                  fixed=fixed))
        elif isinstance(p, CategoricalParam):
            params.append(replace(p, logits=[float(c.logit) for c in item.choices],
                                  fixed=fixed))
        else:
            params.append(replace(p, logit=float(item.logit), fixed=fixed))
    return ParameterSpace(params, base_space.name, base_space.presets)


def base_space(settings) -> ParameterSpace:
    """The space the props were last filled from (else the chosen scene's shipped space)."""
    if settings.space_json:
        return ParameterSpace.from_json(settings.space_json)
    return ParameterSpace.from_dict(space_dict(settings.scene))


def current_space(settings) -> ParameterSpace:
    """What the panel shows, as a ParameterSpace (the base when nothing is loaded yet)."""
    base = base_space(settings)
    if not len(settings.params):
        return base
    return props_to_space(settings, base)


# ------------------------------------------------------------------------------ callbacks


def _edited(owner) -> None:
    scene = owner.id_data
    for hook in list(EDIT_HOOKS):
        hook(scene)


def _on_mean(self, _context) -> None:
    if not is_filling():
        _edited(self)


def _on_std(self, _context) -> None:
    if is_filling():
        return
    with filling():
        self.log_std = clamp_log_std(self.std)
        self.std = math.exp(self.log_std)
    _edited(self)


def _param_of_choice(choice):
    """The AutosimParam that owns a choice item (via its RNA path)."""
    path = choice.path_from_id()
    return choice.id_data.path_resolve(path.rsplit(".choices[", 1)[0])


def _on_prob(self, _context) -> None:
    if is_filling():
        return
    param = _param_of_choice(self)
    choices = list(param.choices)
    index = next(i for i, c in enumerate(choices) if c.as_pointer() == self.as_pointer())
    probs = renormalised([c.prob for c in choices], index, self.prob)
    logits = logits_from_probs(probs)
    with filling():
        for c, logit, p in zip(choices, logits, softmax(logits)):
            c.logit, c.prob = logit, p
    _edited(self)


def _on_bernoulli_prob(self, _context) -> None:
    if is_filling():
        return
    with filling():
        self.logit = logit_from_prob(self.prob)
        self.prob = sigmoid(self.logit)
    _edited(self)


def _on_fixed(self, _context) -> None:
    if not is_filling():
        _edited(self)


def _on_logit(self, _context) -> None:
    """A logit typed in (the panel's "logits" view): the shown probabilities follow."""
    if is_filling():
        return
    param = _param_of_choice(self)
    with filling():
        for c, p in zip(param.choices, softmax([c.logit for c in param.choices])):
            c.prob = p
    _edited(self)


def _on_bernoulli_logit(self, _context) -> None:
    if is_filling():
        return
    with filling():
        self.prob = sigmoid(self.logit)
    _edited(self)


# ------------------------------------------------------------------------------ groups


class AutosimComponent(PropertyGroup):
    """One component of a normal parameter."""

    mean: FloatProperty(name="Mean", description="Mean of this component", update=_on_mean)
    std: FloatProperty(name="Spread", description="Standard deviation of this component",
                       min=STD_MIN, max=STD_MAX, soft_min=0.001, default=1.0, precision=3,
                       update=_on_std)
    log_std: FloatProperty(name="log std", description="Stored log standard deviation (psi)")
    low: FloatProperty(name="Low", description="Renderer clips samples below this")
    high: FloatProperty(name="High", description="Renderer clips samples above this")
    has_low: BoolProperty(default=False)
    has_high: BoolProperty(default=False)


class AutosimChoice(PropertyGroup):
    """One choice of a categorical parameter."""

    prob: FloatProperty(name="Probability", description="Probability of this choice (the "
                        "others rescale to keep the total at 1)", min=0.0, max=1.0,
                        subtype="FACTOR", precision=3, update=_on_prob)
    logit: FloatProperty(name="Logit", description="Stored logit (psi); probabilities are "
                         "softmax(logits)", update=_on_logit)


class AutosimParam(PropertyGroup):
    """One parameter of the space and its distribution."""

    kind: StringProperty(name="Kind", description="normal, categorical or bernoulli")
    doc: StringProperty(name="Description")
    fixed: BoolProperty(name="Fixed", default=False, update=_on_fixed,
                        description="Fixed: the optimizer leaves this distribution alone. "
                                    "Off: the optimizer may move it")
    show_expanded: BoolProperty(name="Show", default=True)
    components: CollectionProperty(type=AutosimComponent)
    choices: CollectionProperty(type=AutosimChoice)
    prob: FloatProperty(name="Probability", description="Probability of 'on'", min=0.0,
                        max=1.0, subtype="FACTOR", precision=3, update=_on_bernoulli_prob)
    logit: FloatProperty(name="Logit", description="Stored logit (psi); p = sigmoid(logit)",
                         update=_on_bernoulli_logit)


class AutosimBinding(PropertyGroup):
    """One binding of the file's description, as the panel lists it (filled by source.py)."""

    param: StringProperty(name="Parameter")
    kind: StringProperty(name="Kind")
    target: StringProperty(name="Target", description="What it drives, as Python spells it")
    json: StringProperty(name="Binding", description="The binding as stored (JSON)")


_SCENE_ITEMS = [(n, n.title(), f"The built-in {n!r} scene") for n in SCENE_NAMES]
GROUP_ITEMS = [("ALL", "All", "Every binding", "PRESET", 0),
               ("LIGHTS", "Lights", "Lights and the world", "LIGHT", 1),
               ("QUALITY", "Quality", "Render settings (samples, bounces)", "RENDER_STILL", 2),
               ("PLACEMENT", "Placement", "Where objects are and which are shown",
                "OBJECT_ORIGIN", 3),
               ("MATERIALS", "Materials", "Materials and their inputs", "MATERIAL", 4),
               ("OTHER", "Other", "Everything else", "DOT", 5)]


class AutosimSettings(PropertyGroup):
    """Everything AutoSim keeps on a Scene (`scene.autosim`)."""

    scene: EnumProperty(name="Example", items=_SCENE_ITEMS,
                        description="Which built-in example scene to build (in a new scene)")
    params: CollectionProperty(type=AutosimParam)
    active_param: IntProperty(name="Active parameter", default=0)
    bindings: CollectionProperty(type=AutosimBinding)
    group_filter: EnumProperty(name="Show", items=GROUP_ITEMS, default="ALL",
                               description="Which bindings the list shows")
    show_logits: BoolProperty(name="Logits", default=False,
                              description="Show and edit logits instead of probabilities")
    description_hash: StringProperty(name="Description hash",
                                     description="Hash of the stored description the panel "
                                                 "shows (a different one: edited elsewhere)")
    space_json: StringProperty(name="Space", description="The base parameter space (JSON)")
    space_name: StringProperty(name="Space name")
    # server
    address: StringProperty(name="Address", default=DEFAULT_ADDRESS,
                            description="ZeroMQ endpoint the render server binds "
                                        "(port * = any free port)")
    server_running: BoolProperty(name="Running")
    server_endpoint: StringProperty(name="Endpoint")
    server_client: StringProperty(name="Optimizer", description="The connected optimizer")
    server_generation: IntProperty(name="Generation", description="Psi generation (internal)")
    server_updates: IntProperty(name="Updates", description="Distribution updates received "
                                "from the optimizer in this run")
    val_metric: FloatProperty(name="Validation metric", precision=4)
    has_val_metric: BoolProperty()
    metric_name: StringProperty(name="Metric", description="Name of the validation metric")
    metrics_text: StringProperty(name="Metrics", description="Other metrics the optimizer sent")
    server_requests: IntProperty(name="Requests")
    server_images: IntProperty(name="Images")
    last_error: StringProperty(name="Last error")
    # watching a run (watch.py)
    watch_address: StringProperty(name="Run", default=WATCH_ADDRESS,
                                  description="An optimizer's --publish address to watch")
    watch_running: BoolProperty(name="Watching")
    watch_endpoint: StringProperty(name="Watched address")
    watch_run: StringProperty(name="Run name")
    watch_scene: StringProperty(name="Run scene")
    watch_metric_name: StringProperty(name="Run metric")
    watch_iteration: IntProperty(name="Iteration")
    watch_images: IntProperty(name="Images")
    watch_metric: FloatProperty(name="Run metric value", precision=4)
    watch_has_metric: BoolProperty()
    watch_final: BoolProperty(name="Finished")
    watch_messages: IntProperty(name="Updates received")
    watch_shown: StringProperty(name="Shown", description="WAITING, PANEL or TEXT (internal)")
    watch_error: StringProperty(name="Watch error")
    # preview and dataset
    preview_seed: IntProperty(name="Seed", min=0, default=0,
                              description="Seed of the random sample applied / previewed")
    preview_size: IntProperty(name="Size", min=8, max=2048, default=128,
                              description="Preview render width and height in pixels")
    preview_samples: IntProperty(name="Samples", min=1, max=4096, default=16,
                                 description="A preview renders with at most this many Cycles "
                                             "samples, so the interface stays responsive")
    last_sample: StringProperty(name="Last sample", description="The last applied latent")
    dataset_dir: StringProperty(name="Folder", subtype="DIR_PATH",
                                description="Where the dataset is written")
    dataset_n: IntProperty(name="Images", min=1, max=1_000_000, default=16)
    dataset_size: IntProperty(name="Size", min=8, max=4096, default=64,
                              description="Image width and height in pixels")
    dataset_seed: IntProperty(name="Seed", min=0, default=0)


classes = (AutosimComponent, AutosimChoice, AutosimParam, AutosimBinding, AutosimSettings)
_register_classes, _unregister_classes = bpy.utils.register_classes_factory(classes)


def register() -> None:
    _register_classes()
    bpy.types.Scene.autosim = PointerProperty(type=AutosimSettings)


def unregister() -> None:
    if hasattr(bpy.types.Scene, "autosim"):
        del bpy.types.Scene.autosim
    _unregister_classes()
