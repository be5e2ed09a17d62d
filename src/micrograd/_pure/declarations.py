"""Op codes, flag bits and the Tape's instruction: the twin of ``micrograd/_engine.pxd``.

The compiled core's structs have counterparts only where the twin needs them: its
nodes are ``Value`` objects with ``__slots__`` (node.py), its arrays are lists, and
CPython allocates, so the allocator's chunk has none.
"""

# Op codes. One small int per node selects its forward rule and its local-gradient rule
# (rules.py). The core uses the same numbers.
LEAF = 0      # no rule: parameters, inputs, constants
ADD = 1       # a + b
MUL = 2       # a * b
POWC = 3      # a ** c, c a plain number (upstream's only kind of power)
POW = 4       # a ** b, both Values: the exponent gets a gradient too
RELU = 5      # max(a, 0)
TANH = 6      # tanh(a)
EXP = 7       # e ** a
LOG = 8       # ln(a)
SIGMOID = 9   # 1 / (1 + e ** -a)
CUSTOM = 10   # built by hand as Value(data, _children, _op): children walked, no rule
FMA = 11      # Tape only: acc + a*b, an ADD fused with the MUL that feeds only it

# Bits of Value._flags.
VISITED = 1      # entered by the current topological walk (cleared when it ends)
DONE = 2         # appended to the current walk's order (cleared when it ends)
INT_EXP = 4      # POWC's exponent was an int: _op shows '**2', not '**2.0'
HAS_EXTRA = 8    # this node has extras (label, hand-built _op/_children)
USER_RULE = 32   # the user assigned _backward: the walk calls it instead of the rule
USED = 64        # an operand or child of some node (only such a node can end up in a
                 # cycle, when __init__ or _prev gives it new children)
PICKLE_INNER = 128   # listed below a root being pickled: its __reduce__ gives itself only
# (The core's TAPED = 16 marks nodes whose data may live in a tape; the twin writes
# every node back after a replay, so it has none.)

# Fields of a node's extras (extras.py).
EXTRA_LABEL = 0      # label: a str, or None for ''
EXTRA_OP = 1         # _op given to Value(): a str, or None to name the op by its code
EXTRA_CHILDREN = 2   # _children given to Value() (CUSTOM nodes): a tuple of Values
EXTRA_RULE = 3       # the function assigned to _backward (with USER_RULE), or None
EXTRA_ATTRS = 4      # the core's attribute dict; the twin's Value has a __dict__
N_EXTRAS = 5

# What a walk (walk.py: _record) does besides ordering the nodes.
WALK_CHECK = 1   # raise, before anything changes, what backward would raise
WALK_LEAVES = 2  # record leaves too (a Tape needs them; backward has no rule for them)

# Which of a node's two numbers a write-back stores (walk.py: _set_field).
FIELD_DATA = 0   # Value.data
FIELD_GRAD = 1   # Value.grad

# What a Tape's recording decides for each node (Tape._plan's mark list; bits).
MARK_FUSED = 2   # a MUL fused into the ADD right after it, its only consumer
# (The core also marks the op nodes the user holds, MARK_HELD = 1, from their reference
# counts, to write back only those after a replay; the twin writes every node back.)


class Instr:
    """One Tape instruction (the core's is a 16-byte struct)."""
    __slots__ = (
        'op',   # op code (FMA included)
        'x',    # first operand's slot (FMA: acc)
        'y',    # second operand's slot, or a constant's (FMA: a)
        'z',    # FMA: b's slot; 0 for the other ops
    )

    def __init__(self, op, x, y, z=0):
        self.op, self.x, self.y, self.z = op, x, y, z
