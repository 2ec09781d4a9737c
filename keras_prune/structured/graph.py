"""Channel groups: which channels of which layers must be removed together.

`channel_groups(model)` walks a Functional or Sequential model (nested ones
included) node by node and follows the channel axis (the last one: every
layer must be `channels_last`) of every tensor. A producer (Conv, Dense, ...)
starts a group of channels; the group then records every layer that reads
or passes those channels on, with the index mapping it needs (a Concatenate
offset, the H*W repeats of a Flatten). Layers that add or multiply tensors
merge their groups, since they must lose the same channels. What each layer
class does to channels is its role in `layer_rules`.

A MultiHeadAttention reads its query, key and value channels (the rows of
its projection kernels), produces new output channels (its output
projection), and owns a group of its own: its attention heads, removed whole
(the head slices of the query, key, value and output kernels).

Whatever the walker cannot follow (a Lambda, a Reshape that moves the channel
axis, an unknown layer, a model output) blocks the groups that reach it, with
the reason: those channels are left alone, never silently mis-sliced.
"""

import dataclasses
import math

from keras import layers as L

from keras_prune.structured import layer_rules as rules
from keras_prune.structured.layer_rules import ATTENTION_INPUTS
from keras_prune.structured.nodes import call_record
from keras_prune.structured.nodes import check_model
from keras_prune.structured.nodes import is_graph_model
from keras_prune.structured.nodes import nodes_in_order


@dataclasses.dataclass(frozen=True)
class Member:
    """One layer's share of a channel group.

    Args:
        layer: the layer's path in the model (`"outer/inner"` when nested).
        role: `"out"` (the layer produces the channels: kernel output slices
            and bias), `"in"` (it reads them: kernel input slices),
            `"through"` (per-channel parameters, channels pass on:
            BatchNormalization, LayerNormalization, DepthwiseConv2D),
            `"query"` / `"key"` / `"value"` (a MultiHeadAttention reads them
            as that input: rows of that projection kernel), `"heads"` (the
            group's channels are the layer's attention heads) or `"mlp"`
            (the MLP channels of a transformer block).
        offset: where the group starts on the layer's channel axis.
        width: channels on that axis (before `tile`).
        tile: how many times the axis repeats in the layer's input features
            (H*W after a Flatten).
    """

    layer: str
    role: str
    offset: int = 0
    width: int = 0
    tile: int = 1

    def indices(self, channels):
        """The layer's feature indices for the group's `channels`."""
        return [
            p * self.width + self.offset + c
            for p in range(self.tile)
            for c in channels
        ]


@dataclasses.dataclass
class ChannelGroup:
    """Channels that must be kept or removed together.

    Channel `i` of the group is channel `i` of every member (mapped by
    `Member.indices`). `blocked` lists why the group cannot be pruned; an
    empty list means it can.
    """

    id: int
    size: int
    members: list
    blocked: list

    @property
    def prunable(self):
        return not self.blocked

    @property
    def producers(self):
        """The layers that make the group's channels (or own its heads)."""
        return [m.layer for m in self.members
                if m.role in ("out", "heads", "mlp")]

    @property
    def name(self):
        names = [m.layer + ("" if m.role == "out" else ":" + m.role)
                 for m in self.members if m.role in ("out", "heads", "mlp")]
        return "+".join(names) or f"group{self.id}"


class ChannelGraph:
    """The channel groups of a model, and how each layer's axes map to them.

    Attributes:
        groups: list of `ChannelGroup`, in the order the walk met them.
        layers: dict layer path -> layer.
        input_maps / output_maps: dict layer path -> channel map of the
            layer's (first) input / output: `(segments, tile)` where
            `segments` is a tuple of `(group id or None, channels)`; None
            marks channels that never change (model inputs, unfollowed ops).
        model_inputs: dict nested model path -> channel maps of its inputs.
        attention: dict MultiHeadAttention path -> `{"query", "key",
            "value"}` channel maps of its inputs and `"heads"`, the group id
            of its attention heads.
        calls: dict layer path -> `(layer, [call records])`, what
            `nodes.layer_calls` returns, recorded on the way (costs).
        blocks: dict transformer block path -> {role: group id} of its
            groups (`"mlp"`, `"heads"`: `layer_rules.transformer`).
        left_whole: dict layer path -> `(class name, weights, reason)` of
            the layers with kernels the walker does not follow (a custom
            layer, a grouped convolution): their channels stay whole.
    """

    def __init__(self, model):
        check_model(model)
        self.model = model
        self.structure = _structure(model)
        self.calls = {}
        self.layers = {}
        self.input_maps = {}
        self.output_maps = {}
        self.model_inputs = {}
        self.attention = {}
        self.left_whole = {}
        self.blocks = {}
        self._left_ids = set()
        self._parent = {}
        self._size = {}
        self._members = {}
        self._blocked = {}
        self._produced = {}
        tensor_maps = {
            id(t): _fixed(t.shape[-1]) for t in model.inputs
        }
        self._walk(model, tensor_maps, prefix="")
        for t in model.outputs:
            self._block(tensor_maps[id(t)], "reaches a model output")
        self.groups = self._collect()

    def describes(self, model):
        """True if the graph is still `model`'s: the same model object,
        with the same layers (a Sequential's `add`/`pop` change them)."""
        return model is self.model and _structure(model) == self.structure

    def width(self, channel_map):
        """The number of features of a channel map (None: unknown)."""
        segments, tile = channel_map
        if any(n is None for _, n in segments):
            return None
        return sum(n for _, n in segments) * tile

    def group(self, gid):
        """The `ChannelGroup` holding the group id `gid` (None: fixed)."""
        if gid is None:
            return None
        return self._by_root[self._find(gid)]

    def kept(self, channel_map, keep):
        """Feature indices of a channel map that survive `keep`.

        Args:
            channel_map: `(segments, tile)` from `input_maps`/`output_maps`.
            keep: dict `ChannelGroup.id` -> sorted kept channels.

        Returns:
            A list, or None for a map of unknown width (the last axis of
            token ids: never channels, never cut).
        """
        segments, tile = channel_map
        if any(n is None for _, n in segments):
            return None
        width = sum(n for _, n in segments)
        out = []
        for p in range(tile):
            offset = p * width
            for gid, n in segments:
                if gid is None:
                    out.extend(range(offset, offset + n))
                else:
                    out.extend(offset + c for c in keep[self.group(gid).id])
                offset += n
        return out

    # --- union-find over group ids -------------------------------------

    def _new_group(self, size, member):
        gid = len(self._parent)
        self._parent[gid] = gid
        self._size[gid] = size
        self._members[gid] = [member]
        self._blocked[gid] = []
        return gid

    def _find(self, gid):
        while self._parent[gid] != gid:
            self._parent[gid] = self._parent[self._parent[gid]]
            gid = self._parent[gid]
        return gid

    def _union(self, a, b):
        a, b = self._find(a), self._find(b)
        if a != b:
            self._parent[b] = a
            self._members[a] += self._members.pop(b)
            self._blocked[a] += self._blocked.pop(b)

    def _block(self, channel_map, reason):
        for gid, _ in channel_map[0]:
            if gid is not None:
                root = self._find(gid)
                if reason not in self._blocked[root]:
                    self._blocked[root].append(reason)

    def _add(self, channel_map, path, role):
        segments, tile = channel_map
        width = sum(n for _, n in segments)
        offset = 0
        for gid, n in segments:
            if gid is not None:
                self._members[self._find(gid)].append(
                    Member(path, role, offset, width, tile)
                )
            offset += n

    def _couple(self, maps, where):
        """Channel i of every map is the same channel: merge their groups."""
        first = maps[0]
        shapes = {(tuple(n for _, n in m[0]), m[1]) for m in maps}
        if len(shapes) > 1:
            for m in maps:
                self._block(m, f"{where} joins tensors whose channels are "
                               "split differently")
            return _fixed(sum(n for _, n in first[0]) * first[1])
        for i in range(len(first[0])):
            gids = [m[0][i][0] for m in maps]
            if any(g is None for g in gids):
                for g in gids:
                    self._block(
                        (((g, 0),), 1), f"{where} joins them with "
                        "channels that cannot be pruned (a model input or "
                        "an unfollowed layer)")
                continue
            for g in gids[1:]:
                self._union(gids[0], g)
        return first

    def _collect(self):
        groups = []
        self._by_root = {}
        for gid in sorted(self._members):
            members = list(dict.fromkeys(self._members[gid]))
            group = ChannelGroup(len(groups), self._size[gid], members,
                                 list(self._blocked[gid]))
            self._by_root[gid] = group
            groups.append(group)
        return groups

    # --- the walk ------------------------------------------------------

    def _walk(self, model, tensor_maps, prefix):
        for node in nodes_in_order(model):
            op = node.operation
            ins = [tensor_maps[id(t)] for t in node.input_tensors]
            outs = node.output_tensors
            if is_graph_model(op):
                for t, m in zip(op.inputs, ins):
                    tensor_maps[id(t)] = m
                path = prefix + op.name
                self.layers.setdefault(path, op)
                # A model called again must see the same channels again.
                for old, new in zip(self.model_inputs.setdefault(path, ins),
                                    ins):
                    if old is not new:
                        self._couple([old, new], f"shared model {path!r}")
                self._walk(op, tensor_maps, prefix + op.name + "/")
                for t, inner in zip(outs, op.outputs):
                    tensor_maps[id(t)] = tensor_maps[id(inner)]
                continue
            path = prefix + op.name
            self.calls.setdefault(path, (op, []))[1].append(call_record(node))
            result = self._follow(op, path, node, ins)
            if isinstance(result, str):
                where = f"{type(op).__name__} {path!r}"
                for m in ins:
                    self._block(m, f"feeds {where}, which {result}")
                kernels = _kernel_weights(op)
                # Listed once, at its first path (a task calls its
                # backbone's token embedding again for the logits).
                if kernels and id(op) not in self._left_ids:
                    self._left_ids.add(id(op))
                    self.left_whole[path] = (type(op).__name__, kernels,
                                             result)
                result = [_fixed(t.shape[-1]) for t in outs]
            elif not isinstance(result, list):
                result = [result]
            for t, m in zip(outs, result):
                tensor_maps[id(t)] = m
            if isinstance(op, L.Layer):
                self.layers.setdefault(path, op)
                if ins:
                    self.input_maps.setdefault(path, ins[0])
                self.output_maps.setdefault(path, result[0])

    def _follow(self, layer, path, node, ins):
        """The output channel map(s) of one call, or why it is not followed.

        What a layer does to channels is its rule's `role`
        (`layer_rules`); the walker knows what each role does.
        """
        if not isinstance(layer, L.Layer) and rules.exact_rule(layer) is None:
            return "is a plain operation the walker does not follow"
        if getattr(layer, "data_format", "channels_last") != "channels_last":
            return "is channels_first (only channels_last is followed)"
        rule = rules.rule_for(layer)
        role = rule.role_for(layer)
        if path in self.input_maps and role in (rules.PRODUCER,
                                                rules.THROUGH):
            # A shared layer: every call must see the same channels.
            self._couple([self.input_maps[path], ins[0]],
                         f"shared layer {path!r}")
            return self.output_maps[path]
        if role is None:
            return "the walker does not know how to follow"
        if rule.exact and type(layer) not in rule.classes:
            return (f"subclasses {rule.classes[0].__name__} (only the Keras "
                    "class itself is followed)")
        if role == rules.ATTENTION:
            return self._attention(layer, path, node, ins)
        if role == rules.BLOCK:
            return self._transformer_block(layer, rule, path, node, ins)
        in_shape = node.input_tensors[0].shape if ins else None
        reason = rule.unsupported(layer, in_shape)
        if reason:
            return reason
        if role == rules.PRODUCER:
            return self._producer(layer, rule, path, ins)
        if role == rules.THROUGH:
            self._add(ins[0], path, "through")
            return ins[0]
        if role == rules.ELEMENTWISE:
            return ins[0]
        if role == rules.GLOBAL_POOLING:
            return ins[0] if ins[0][1] == 1 else "pools a flattened tensor"
        if role == rules.MERGE:
            return self._merge(layer, path, node, ins)
        if role == rules.CONCATENATE:
            return self._concatenate(layer, path, node, ins)
        if role == rules.FLATTEN:
            return self._flatten(ins[0], in_shape)
        return self._reshape(ins[0], in_shape, node.output_tensors[0].shape)

    def _producer(self, layer, rule, path, ins):
        if ins[0][1] != 1 and not rule.reads_flattened:
            return "reads a flattened tensor"
        self._add(ins[0], path, "in")
        if path not in self._produced:
            n = rule.channels(layer)
            self._produced[path] = self._new_group(
                n, Member(path, "out", 0, n, 1)
            )
        return (((self._produced[path], self._size_of(path)),), 1)

    def _attention(self, layer, path, node, ins):
        """Heads, projections and output channels of a MultiHeadAttention."""
        where = f"MultiHeadAttention {path!r}"
        by_id = {id(t): m for t, m in zip(node.input_tensors, ins)}
        args, kwargs = node.arguments.args, node.arguments.kwargs
        tensors = dict(zip(("query", "value", "key"), args))
        tensors.update({k: kwargs[k] for k in ATTENTION_INPUTS if k in kwargs})
        if tensors.get("key") is None:
            tensors["key"] = tensors["value"]
        maps = {k: by_id[id(tensors[k])] for k in ATTENTION_INPUTS}
        read = {id(t) for t in tensors.values()}
        for t, m in zip(node.input_tensors, ins):
            if id(t) not in read:
                self._block(m, f"is an attention mask of {where}")
        if path in self.attention:
            # A shared layer: every call must see the same channels.
            for k in ATTENTION_INPUTS:
                self._couple([self.attention[path][k], maps[k]],
                             f"shared layer {path!r}")
            out = self.output_maps[path]
        else:
            heads = self._new_group(
                layer.num_heads,
                Member(path, "heads", 0, layer.num_heads, 1))
            self.attention[path] = dict(maps, heads=heads)
            for k in ATTENTION_INPUTS:
                if maps[k][1] != 1:
                    self._block(maps[k], f"is read flattened by {where}")
                self._add(maps[k], path, k)
            n = node.output_tensors[0].shape[-1]
            self._produced[path] = self._new_group(n, Member(path, "out", 0,
                                                             n, 1))
            out = (((self._produced[path], n),), 1)
        if len(node.output_tensors) > 1:
            self._block((((self.attention[path]["heads"], 0),), 1),
                        f"{where} returns its attention scores, which "
                        "have a head axis")
            return [out, _fixed(node.output_tensors[1].shape[-1])]
        return out

    def _transformer_block(self, layer, rule, path, node, ins):
        """A transformer block: its MLP channels (and heads, where its rule
        can cut them) are groups of its own; the residual stream it reads
        and writes stays whole."""
        where = f"{type(layer).__name__} {path!r}"
        for m in ins:
            self._block(m, f"is read by {where}, whose residual width is "
                           "not pruned (its MLP channels are)")
        if path not in self.blocks:
            self.blocks[path] = {
                role: self._new_group(n, Member(path, role, 0, n, 1))
                for role, n in rule.groups(layer).items()}
            for name, sub, reason in rule.left_whole(layer):
                if id(sub) not in self._left_ids:
                    self._left_ids.add(id(sub))
                    self.left_whole[f"{path}/{name}"] = (
                        type(sub).__name__, _kernel_weights(sub), reason)
        return [_fixed(t.shape[-1]) for t in node.output_tensors]

    def _size_of(self, path):
        return self._size[self._produced[path]]

    def _merge(self, layer, path, node, ins):
        where = f"{type(layer).__name__} {path!r}"
        out_c = node.output_tensors[0].shape[-1]
        full, broadcast = [], []
        for t, m in zip(node.input_tensors, ins):
            (full if t.shape[-1] == out_c else broadcast).append(m)
        for m in broadcast:
            self._block(m, f"is broadcast over the channels by {where}")
        return self._couple(full, where)

    def _concatenate(self, layer, path, node, ins):
        rank = len(node.output_tensors[0].shape)
        if layer.axis % rank != rank - 1:
            return self._couple(ins, f"Concatenate {path!r}")
        if any(m[1] != 1 for m in ins):
            return "concatenates flattened tensors"
        return (sum((m[0] for m in ins), ()), 1)

    def _reshape(self, channel_map, in_shape, out_shape):
        if in_shape[-1] == out_shape[-1] and channel_map[1] == 1:
            return channel_map
        if len(out_shape) == 2:
            return self._flatten(channel_map, in_shape)
        return "moves the channel axis"

    def _flatten(self, channel_map, in_shape):
        spatial = in_shape[1:-1]
        if any(d is None for d in spatial):
            return "flattens a tensor of unknown spatial size"
        return (channel_map[0], channel_map[1] * math.prod(spatial))


def channel_groups(model):
    """The `ChannelGraph` of a Functional or Sequential model.

    Args:
        model: a built Functional or Sequential Keras model (not modified).

    Returns:
        A `ChannelGraph`; its `groups` attribute lists every `ChannelGroup`.

    Example:

    ```python
    graph = channel_groups(model)
    for group in graph.groups:
        print(group.name, group.size, group.blocked)
    ```
    """
    return ChannelGraph(model)


def _kernel_weights(layer):
    """How many weights `layer` holds in kernels (variables of rank 2 or
    more: what structured pruning would cut)."""
    return sum(math.prod(v.shape) for v in getattr(layer, "weights", ())
               if len(v.shape) >= 2)


def _fixed(channels):
    return (((None, channels),), 1)


def _structure(model):
    """The ids of a model's layers, nested models' layers included."""
    return tuple(
        (id(layer), _structure(layer) if is_graph_model(layer) else ())
        for layer in model.layers
    )
