"""Minimal stand-in for ``comfy_api.latest`` (schemas only; see tests/stubs/README.md)."""
from __future__ import annotations

from abc import ABC, abstractmethod
from types import SimpleNamespace

STUB = True


def _prune(d: dict) -> dict:
    return {k: v for k, v in d.items() if v is not None}


class _Input:
    io_type = "*"
    widget = False

    def __init__(self, id, display_name=None, optional=False, tooltip=None, lazy=None, **widget):
        self.id, self.display_name, self.optional, self.tooltip, self.lazy = id, display_name, optional, tooltip, lazy
        self.widget_kwargs = widget

    def as_dict(self) -> dict:
        return _prune({"display_name": self.display_name, "tooltip": self.tooltip, "lazy": self.lazy})


class _Output:
    io_type = "*"

    def __init__(self, id=None, display_name=None, tooltip=None, is_output_list=False):
        self.id, self.display_name, self.tooltip, self.is_output_list = id, display_name, tooltip, is_output_list


def _widget_input(io_type: str, keys: tuple[str, ...], renames: dict | None = None, fixed: dict | None = None):
    renames = renames or {}

    class WidgetInput(_Input):
        widget = True

        def __init__(self, id, display_name=None, optional=False, tooltip=None, lazy=None, default=None,
                     socketless=None, force_input=None, **kw):
            unknown = set(kw) - set(keys)
            if unknown:
                raise TypeError(f"{io_type}.Input got unexpected keyword arguments {sorted(unknown)}")
            super().__init__(id, display_name, optional, tooltip, lazy)
            self.default, self.socketless, self.force_input, self.kw = default, socketless, force_input, kw

        def as_dict(self) -> dict:
            out = super().as_dict() | _prune(
                {"default": self.default, "socketless": self.socketless, "forceInput": self.force_input}
            )
            out |= dict(fixed or {})
            out |= _prune({renames.get(k, k): self.kw.get(k) for k in keys})
            return out

    WidgetInput.io_type = io_type
    return WidgetInput


def _type(io_type: str, input_cls=None):
    inp = input_cls or type("Input", (_Input,), {"io_type": io_type})
    out = type("Output", (_Output,), {"io_type": io_type})
    return SimpleNamespace(io_type=io_type, Input=inp, Output=out)


class Schema:
    def __init__(self, node_id, display_name=None, category="sd", inputs=None, outputs=None, hidden=None,
                 description="", is_input_list=False, is_output_node=False, is_deprecated=False,
                 is_experimental=False, is_api_node=False, not_idempotent=False, enable_expand=False):
        self.node_id, self.display_name, self.category = node_id, display_name, category
        self.inputs, self.outputs, self.hidden = inputs or [], outputs or [], hidden or []
        self.description, self.is_output_node = description, is_output_node
        self.is_deprecated, self.is_experimental, self.is_api_node = is_deprecated, is_experimental, is_api_node

    def get_v1_info(self, cls=None) -> dict:
        inputs: dict = {"required": {}}
        for i in self.inputs:
            inputs.setdefault("optional" if i.optional else "required", {})[i.id] = [i.io_type, i.as_dict()]
        info = {
            "input": inputs,
            "input_order": {k: list(v) for k, v in inputs.items()},
            "output": [o.io_type for o in self.outputs],
            "output_is_list": [o.is_output_list for o in self.outputs],
            "output_name": [o.display_name or o.io_type for o in self.outputs],
            "output_tooltips": [o.tooltip for o in self.outputs],
            "name": self.node_id,
            "display_name": self.display_name,
            "description": self.description,
            "category": self.category,
            "output_node": self.is_output_node,
            "deprecated": self.is_deprecated,
            "experimental": self.is_experimental,
            "api_node": self.is_api_node,
        }
        return info


class ComfyNode:
    @classmethod
    def define_schema(cls) -> Schema:
        raise NotImplementedError

    @classmethod
    def GET_SCHEMA(cls) -> Schema:
        return cls.define_schema()


class NodeOutput:
    def __init__(self, *args, ui=None, expand=None, block_execution=None):
        self.args, self.ui, self.expand, self.block_execution = args, ui, expand, block_execution

    @property
    def result(self):
        return self.args if self.args else None


class ComfyExtension(ABC):
    async def on_load(self) -> None:
        pass

    @abstractmethod
    async def get_node_list(self) -> list:
        ...


_NUM = ("min", "max", "step", "display_mode")
io = SimpleNamespace(
    ComfyNode=ComfyNode,
    Schema=Schema,
    NodeOutput=NodeOutput,
    Int=_type("INT", _widget_input("INT", _NUM + ("control_after_generate",), {"display_mode": "display"})),
    Float=_type("FLOAT", _widget_input("FLOAT", _NUM + ("round",), {"display_mode": "display"})),
    Boolean=_type("BOOLEAN", _widget_input("BOOLEAN", ("label_on", "label_off"))),
    String=_type(
        "STRING",
        _widget_input("STRING", ("multiline", "placeholder", "dynamic_prompts"), {"dynamic_prompts": "dynamicPrompts"},
                      fixed={"multiline": False}),
    ),
    Combo=_type("COMBO", _widget_input("COMBO", ("options", "control_after_generate"), fixed={"multiselect": False})),
    Custom=lambda io_type: _type(io_type),
    **{name: _type(t) for name, t in {
        "Image": "IMAGE", "Mask": "MASK", "Latent": "LATENT", "Conditioning": "CONDITIONING", "Model": "MODEL",
        "Vae": "VAE", "Clip": "CLIP", "Sampler": "SAMPLER", "Sigmas": "SIGMAS", "Noise": "NOISE", "Guider": "GUIDER",
    }.items()},
)
ui = SimpleNamespace()
