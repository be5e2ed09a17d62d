"""Tape: record a graph once, then replay forward and backward over dense lists.

The twin of ``src/core/tape.pxi``. Recording (_plan, _place, _compile) numbers every
node with a slot: leaves first, then op nodes in topological order (the MULs fused
into an FMA last), then constants (0.0 for unary ops' y, POWC exponents). Instruction
k writes slot n_leaves + k from slots code[k].x and code[k].y (and .z).

The core copies values back only into the Values a user holds and syncs the rest on
demand (its _sync_tapes, _observe, _sync, _tag, _untag, _mark_stale); the twin writes
every node back after each replay: the same results, simpler, slower.
"""
from micrograd._pure.declarations import (
    ADD, MUL, POWC, FMA, WALK_LEAVES, FIELD_DATA, FIELD_GRAD, MARK_FUSED, Instr)
from micrograd._pure.node import Value
from micrograd._pure.rules import _forward, _partials, _can_raise, _check_partials
from micrograd._pure.walk import (
    _begin_walk, _end_walk, _record, _unmark, _set_field, _python_rule)
from micrograd._pure.declarations import USER_RULE


def _custom_rule(v):
    """Has v a _backward of its own: assigned, or defined by its subclass?"""
    return v._flags & USER_RULE or type(v)._backward is not Value._backward


def _ready(t):
    """Raise unless t was recorded (Tape.__new__(Tape) skips __init__)."""
    if getattr(t, "_nodes", None) is None:
        raise RuntimeError("Tape is not initialised: create it as Tape(root)")


class Tape:
    """The graph below a root, recorded in topological order for replay.

    forward() recomputes every node from the leaves' current data and returns the
    root's; backward() gives the gradients root.backward() would give on a freshly
    built graph. Python control flow is frozen at record time; data-dependent ops
    (relu's branch, ...) are re-evaluated on every replay.
    """

    def __init__(self, root):
        if not isinstance(root, Value):
            raise TypeError("Tape() needs a Value, not %s" % type(root).__name__)
        if hasattr(self, "code"):
            raise RuntimeError("Tape is already initialised")
        _begin_walk()           # the nodes' marks and _slot are in use until compiled
        try:
            order = []
            n = _record(root, order, WALK_LEAVES)
            _unmark(order)
            refs = [0] * n
            mark = [0] * n
            self._plan(order, n, refs, mark)
            self._place(order, n, refs, mark)
            self._compile(n)
            self.root_slot = root._slot
        finally:
            _end_walk()
        self.spare = list(self.val)         # constants in both
        self._root = root

    def _plan(self, order, n, refs, mark):
        """Count each node's consumers (refs) and decide its place (mark); allocate."""
        n_leaves = n_shared = n_fused = n_powc = 0
        prev = None                     # the op node before p in walk order
        # Number the nodes in walk order and count each one's consumers in the graph.
        for i in range(n):
            order[i]._slot = i
        for p in order:
            if p._a is not None:
                refs[p._a._slot] += 1
                if p._b is not None:
                    refs[p._b._slot] += 1
        # MARK_FUSED: a MUL whose only consumer is the ADD right after it in walk order;
        # the two become one FMA instruction.
        for i in range(n):
            p = order[i]
            if _python_rule(p) and _custom_rule(p):
                raise TypeError("a Tape cannot replay the op %r: its _backward is Python "
                                "code, whose forward rule the Tape does not know; use "
                                "backward() on this graph" % p._op)
            if p._a is None:            # LEAF, or CUSTOM (its data is taken as given)
                n_leaves += 1
                n_shared += refs[i] != 1
                continue
            if p._code == POWC:
                n_powc += 1
            elif (p._code == ADD and prev is not None and prev._code == MUL
                    and refs[prev._slot] == 1 and (p._a is prev or p._b is prev)):
                mark[prev._slot] |= MARK_FUSED
                n_fused += 1
            prev = p
        self.n_leaves = n_leaves        # slots [0, n_leaves): leaves, read by every forward()
        self.n_shared = n_shared        # by_use: the leaves used more than once come first
        self.n_ops = n - n_leaves       # op nodes: first the n_code run by instructions,
        self.n_code = self.n_ops - n_fused      # then the MULs fused into an FMA
        self.n_slots = n + 1 + n_powc   # all slots, constants included
        self.code = [None] * self.n_code        # instruction k writes slot n_leaves + k
        self.fused_in = [0] * n_fused   # per fused MUL: its FMA's instruction number
        self.val = [0.0] * self.n_slots         # data of every slot
        self.grd = [0.0] * self.n_slots         # grad of every slot
        self.by_use = [0] * n_leaves    # leaf slots: shared (or unused) ones, then used once
        self.checked = []               # instructions whose partials can raise
        self._nodes = [None] * n        # the Value recorded in slot s

    def _place(self, order, n, refs, mark):
        """Slots: leaves, instruction nodes, fused MULs, each group in walk order."""
        leaf = code = fused = shared = once = 0
        for i in range(n):
            p = order[i]
            if p._a is None:
                s = leaf
                leaf += 1
                if refs[i] == 1:            # by_use: leaves used once after the others
                    self.by_use[self.n_shared + once] = s
                    once += 1
                else:
                    self.by_use[shared] = s
                    shared += 1
            elif mark[i] & MARK_FUSED:
                s = self.n_leaves + self.n_code + fused
                fused += 1
            else:
                s = self.n_leaves + code
                code += 1
            p._slot = s
            self._nodes[s] = p
            self.val[s] = p.data
            self.grd[s] = p.grad

    def _compile(self, n):
        """One instruction per op node but the fused MULs; constants go after the nodes:
        slot n is 0.0, then POWC exponents."""
        s, j = n + 1, 0
        fused_start = self.n_leaves + self.n_code
        for k in range(self.n_code):
            v = self._nodes[self.n_leaves + k]
            c = self.code[k] = Instr(v._code, v._a._slot, n)
            b = v._b
            if b is not None:
                c.y = b._slot
            elif v._code == POWC:
                self.val[s] = v._c
                c.y = s
                s += 1
            if v._code == ADD:          # ADD(acc, MUL) or ADD(MUL, acc), the MUL fused?
                m = acc = None
                if b._slot >= fused_start:
                    m, acc = b, v._a
                elif v._a._slot >= fused_start:
                    m, acc = v._a, b
                if m is not None:
                    c.op, c.x, c.y, c.z = FMA, acc._slot, m._a._slot, m._b._slot
                    self.fused_in[j] = k
                    j += 1
            if _can_raise(v._code):
                self.checked.append(k)

    def _fill(self, j):
        """Fused MUL j's data and grad, which replay skips, for writing back."""
        k = self.fused_in[j]
        f = self.n_leaves + self.n_code
        self.val[f + j] = self.val[self.code[k].y] * self.val[self.code[k].z]
        self.grd[f + j] = self.grd[self.n_leaves + k]  # the ADD's grad, passed on

    def _fill_fused(self):
        for j in range(self.n_ops - self.n_code):
            self._fill(j)

    def _write_back(self, field):
        """After a replay, copy the op slots' data (or grads) into every op node."""
        src = self.val if field == FIELD_DATA else self.grd
        self._fill_fused()
        for s in range(self.n_leaves, self.n_leaves + self.n_ops):
            _set_field(self._nodes[s], field, src[s])

    def forward(self):
        """Recompute every node from the leaves' current data; return the root's data."""
        _ready(self)
        base, val, code = self.n_leaves, self.spare, self.code
        for s in range(base):
            val[s] = self._nodes[s].data
        for k in range(self.n_code):
            c = code[k]
            if c.op == FMA:
                val[base + k] = val[c.x] + val[c.y] * val[c.z]
            else:
                val[base + k] = _forward(c.op, val[c.x], val[c.y])
        self.spare = self.val           # complete: the new values become current (a
        self.val = val                  # replay that raises leaves val as it was)
        self._write_back(FIELD_DATA)
        return val[self.root_slot]

    def backward(self):
        """Gradients of the root, as root.backward() on a freshly built graph: op nodes'
        grads restart from 0, the root's is 1, leaves' grads accumulate."""
        _ready(self)
        base, val, grd, code = self.n_leaves, self.val, self.grd, self.code
        for k in self.checked:                  # raise before any grad changes
            c = code[k]
            _check_partials(c.op, val[c.x], val[c.y])
        # Leaves accumulate: old grad + c1 + c2 + ... in eager's order. A leaf used once
        # gets one c: it starts from -0.0 (for which -0.0 + c is c, bit for bit) and
        # is added to its Value at the end, so its Value is visited once, not twice.
        for s in self.by_use[:self.n_shared]:
            grd[s] = self._nodes[s].grad
        for s in self.by_use[self.n_shared:]:
            grd[s] = -0.0
        for s in range(base, self.n_slots):     # op nodes' grads restart from 0
            grd[s] = 0.0
        grd[self.root_slot] = 1.0
        for k in range(self.n_code - 1, -1, -1):
            g = grd[base + k]
            c = code[k]
            if c.op == FMA:
                grd[c.x] += g                   # the ADD passes g to acc and to the MUL
                grd[c.y] += val[c.z] * g
                grd[c.z] += val[c.y] * g
            else:
                dx, dy = _partials(c.op, val[c.x], val[c.y], val[base + k])
                grd[c.x] += dx * g
                grd[c.y] += dy * g              # unary ops: lands in a constant's slot
        for s in self.by_use[:self.n_shared]:
            self._nodes[s].grad = grd[s]
        for s in self.by_use[self.n_shared:]:
            self._nodes[s].grad += grd[s]
        self._write_back(FIELD_GRAD)

    def __len__(self):
        _ready(self)
        return self.n_leaves + self.n_ops

    def __reduce__(self):
        raise TypeError("cannot pickle 'Tape' object: record a new Tape from the unpickled root")

    @property
    def root(self):
        return self._root

    @property
    def leaves(self):
        """The recorded nodes without a rule (parameters, inputs, constants), in order."""
        _ready(self)
        return self._nodes[:self.n_leaves]

    @property
    def nodes(self):
        """Every recorded node, leaves first, then op nodes in topological order."""
        _ready(self)
        base = self.n_leaves
        nodes = self._nodes[:base]
        j = 0
        for k in range(self.n_code):
            if self.code[k].op == FMA:     # its fused MUL came right before it
                nodes.append(self._nodes[base + self.n_code + j])
                j += 1
            nodes.append(self._nodes[base + k])
        return nodes

    def instructions(self):
        """The program a replay runs: (op, x, y, z) per instruction, slots as numbered
        when recorded (op codes as in declarations.py; z is 0 but for FMA)."""
        _ready(self)
        return [(c.op, c.x, c.y, c.z) for c in self.code]

    @property
    def n_instructions(self):
        """How many instructions a replay runs: one per op node, less the fused MULs."""
        _ready(self)
        return self.n_code

    def __repr__(self):
        _ready(self)
        return "Tape(%d nodes, %d leaves, %d instructions)" % (
            len(self), self.n_leaves, self.n_code)
