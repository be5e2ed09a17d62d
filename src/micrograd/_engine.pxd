# Declarations of the compiled core (src/_engine.pyx, which includes src/core/*.pxi):
# op codes, flag bits, the structs and the field layouts of Value and Tape. It sits here,
# in the package folder, because Cython looks for micrograd._engine's declarations at
# micrograd/_engine.pxd. The twin's counterpart is micrograd/_pure/declarations.py.
cimport cython
from cpython.ref cimport PyObject
from libc.stdint cimport uint64_t

# Op codes. One byte per node selects its forward rule and its local-gradient rule
# (core/rules.pxi). The twin uses the same numbers.
cdef enum:
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
cdef enum:
    VISITED = 1      # entered by the current topological walk (cleared when it ends)
    DONE = 2         # appended to the current walk's order (cleared when it ends)
    INT_EXP = 4      # POWC's exponent was an int: _op shows '**2', not '**2.0'
    HAS_EXTRA = 8    # this node has an entry in _extras (label, hand-built _op/_children)
    TAPED = 16       # an op node recorded by a live Tape (its data may live in the tape)
    USER_RULE = 32   # the user assigned _backward: the walk calls it instead of the rule
    USED = 64        # an operand or child of some node (only such a node can end up in a
                     # cycle, when __init__ or _prev gives it new children)
    PICKLE_INNER = 128   # listed below a root being pickled: its __reduce__ gives itself only

# Fields of a node's entry in the side table of extras (core/extras.pxi).
cdef enum:
    EXTRA_LABEL = 0      # label: a str, or None for ''
    EXTRA_OP = 1         # _op given to Value(): a str, or None to name the op by its code
    EXTRA_CHILDREN = 2   # _children given to Value() (CUSTOM nodes): a tuple of Values
    EXTRA_RULE = 3       # the function assigned to _backward (with USER_RULE), or None
    EXTRA_ATTRS = 4      # attributes the class does not define: a dict, or None
    N_EXTRAS = 5

# What a walk (core/walk.pxi: _record) does besides ordering the nodes.
cdef enum:
    WALK_CHECK = 1   # raise, before anything changes, what backward would raise
    WALK_LEAVES = 2  # record leaves too (a Tape needs them; backward has no rule for them)

# Which of a node's two numbers a write-back stores (core/walk.pxi: _set_field).
cdef enum:
    FIELD_DATA = 0   # Value.data
    FIELD_GRAD = 1   # Value.grad

# What a Tape's recording decides for each node (Tape._plan's mark array; bits).
cdef enum:
    MARK_HELD = 1    # an op node the user holds (or the root): replays write it back
    MARK_FUSED = 2   # a MUL fused into the ADD right after it, its only consumer

# The node allocator's chunks (core/alloc.pxi).
cdef enum:
    CHUNK = 1 << 21         # bytes per chunk, and its alignment: rounding a node's address
                            # down to a multiple of CHUNK finds its chunk's header; the
                            # size of an x86-64 huge page
    CHUNK_HEADER = 4808     # the _Chunk at its start (4,808 bytes with its bitmaps); nodes follow
    FREE_WORDS = 584        # words of its free-slot bitmap: room for 37,376 slots (a chunk
                            # has 37,363)
    FREE_SUMMARY = 10       # words of the bitmap of those words (640 bits for 584 words)
    SPARE_CHUNKS = 4        # empty chunks kept for the next graph: enough for one of up to
                            # ~130,000 nodes (a demo step's is 3.5 MiB) to be rebuilt in the
                            # slots it had while the one built after it lives

ctypedef struct _Chunk:     # the head of a chunk of node slots
    Py_ssize_t live         # nodes allocated here and not yet freed
    Py_ssize_t used         # slots handed out so far by bumping; the rest are untouched
    Py_ssize_t n_free       # freed slots (below used), to be handed out again
    _Chunk* prev            # links in _partial, the chunks other than the current one with
    _Chunk* next            #   room, first-mapped first (prev and next are NULL at its ends)
    uint64_t serial         # chunks mapped before this one: slots are handed out from the
                            #   first-mapped chunk with room, so a graph rebuilt after its
                            #   predecessor died takes the same slots (core/recall.pxi)
    bint listed             # in _partial
    int low                 # free_words below this index are zero: the search starts here
    uint64_t free_words[FREE_SUMMARY]   # bit w set: free_bits[w] has a bit set
    uint64_t free_bits[FREE_WORDS]      # bit i set: slot i is free (lowest first on reuse)

ctypedef struct _NodeStart: # the start of Value's C struct below, as plain C: the node
                            # factory (core/node.pxi: _node) stores _a into a fresh slot
                            # through it, where Cython would first release the slot's
                            # garbage (the layout is checked at import)
    PyObject ob_base        # the object header: refcount and type
    double data             # Value.data
    double grad             # Value.grad
    PyObject* a             # Value._a: an owned reference (None for a leaf)

ctypedef union _Second:     # a node's second input; which member is set, its op says:
    PyObject* b             # ADD, MUL, POW: the second operand (an owned reference);
                            # NULL for leaves and unary ops
    double c                # POWC: the constant exponent

cdef enum:
    SCRATCH_CACHE = 1 << 17 # items (1 MiB) a walk's scratch arrays keep between walks; a
                            # demo step's graph (~66k nodes) fits, a bigger one's rest is freed

# Walks remembered by backward() (core/recall.pxi).
cdef enum:
    RECALL_WALKS = 2        # walks kept: a notebook's loop holds the last graph while it
                            # builds the next, so two graphs alternate
    LINK_CODE = 0xff        # _Link.code: the op code in its low byte, and these bits:
    LINK_A_LEAF = 1 << 8    #   the first operand was a leaf (and must still be one)
    LINK_B_LEAF = 1 << 9    #   the second operand was a leaf

ctypedef struct _Link:      # one node of a remembered walk, as the walk found it
    PyObject* a             # its first operand
    PyObject* b             # its _second's 8 bytes: second operand, exponent, or NULL
    Py_ssize_t code         # its op code, and LINK_ bits

cdef struct _Walk:          # one remembered walk
    PyObject* root          # the root's address: only compared (that graph may be gone)
    Py_ssize_t n            # nodes in order, children first (0: nothing remembered)
    Py_ssize_t cap          # allocated length of order and links
    PyObject** order        # the walk's order, which backward's rules run in reverse
    _Link* links            # per node of order: what it pointed at
    Py_ssize_t used         # the backward() call that last used it (the oldest goes)

cdef struct _Buf:           # a growable C array of node pointers (core/walk.pxi)
    PyObject** items        # borrowed pointers, unless the owner (a Tape) increfs them
    Py_ssize_t cap          # allocated length of items

# Replay prefetches on tapes whose slots exceed the caches (core/replay.pxi: _prefetch).
cdef enum:
    PREFETCH = 16           # instructions ahead
    PREFETCH_FROM = 1 << 17 # slots (1 MiB of doubles per array): smaller tapes stay in
                            # cache, where the prefetches would only add instructions

# Tape.backward tries to skip a zero-grad run only if it holds more than this many
# instructions: below, the check's unpredictable branch costs more than what it would skip.
cdef enum:
    SKIP_MIN = 8

# Blocks: a dense layer's neurons replayed together (core/blocks.pxi).
cdef enum:
    BLOCK_MAX = 1024        # most FMAs per neuron (inputs) in a block: its buffers are on
                            # the C stack (16 KiB)
    BLOCK_WAYS = 4          # sums run side by side: chains of adds in flight at once
    BLOCK_NARROW = 4        #   unless they are this short (FMAs per neuron): the CPU then
                            #   overlaps one neuron's with the next's on its own
    BLOCK_PACKS_MAX = 64    # weight sets packed per Tape (blocks_packs: a layer's weights,
                            #   laid out for SIMD once per forward, for every sample's block)
    BLOCK_WAYS_DENSE = 8    #   or, over dense weights (a pointer each, no index loads),
                            #   enough to keep two adders busy through an add's latency
    BLOCK_DENSE = 1         # a block's flags (blk[start + 1]): each neuron's weights are
                            #   consecutive slots
    BLOCK_RELU_CHAIN = 2    # its activations are relus and its tails one sum (each an FMA
                            #   adding the activation times a factor to the tail before)
    BLOCK_FLAG_BITS = 8     # the flags' bits; above them, the block's set (blocks sharing
                            #   weights, biases and tails' weights) + 1, or 0 (core/packs.pxi)

cdef struct _Finite:        # what Tape.backward knows of its outputs' finiteness
    Py_ssize_t lo           # outputs lo..hi are finite (none known while lo > hi)
    Py_ssize_t hi
    bint bad_below          # and output lo - 1 is inf or nan

ctypedef struct Instr:      # one Tape instruction, 16 bytes: a replay reads one stream
    int op                  # op code (FMA included)
    int x                   # first operand's slot (FMA: acc)
    int y                   # second operand's slot, or a constant's (FMA: a)
    int z                   # FMA: b's slot; 0 for the other ops


@cython.no_gc        # no GC header (16 bytes per node): see core/extras.pxi for the one
cdef class Value:    # cycle a node can be in, through a _backward closure
    cdef double data            # forward value (always a C double; property in node.pxi)
    cdef double grad            # d(root)/d(self), accumulated by backward() (property too)
    cdef Value _a               # first operand, None for a leaf
    cdef _Second _second        # second operand or POWC's exponent: read with _b and _y
    cdef unsigned char _code    # op code: selects the forward and the local-gradient rule
    cdef unsigned char _flags   # the bits above: VISITED, DONE, INT_EXP, HAS_EXTRA, ...
    cdef unsigned int _slot     # scratch: this node's slot in the Tape being recorded
    # (data..._slot fill 38 bytes after the 16-byte object header: 56 in all with padding,
    # no GC header; no op has both a second operand and an exponent, so they share 8 bytes)


@cython.final
cdef class Tape:
    cdef PyObject** _nodes      # owned: the Value recorded in slot s (s < n_leaves + n_ops)
    cdef Py_ssize_t n_leaves    # slots [0, n_leaves): leaves, read by every forward()
    cdef Py_ssize_t n_ops       # op nodes, in slots [n_leaves, n_leaves + n_ops):
    cdef Py_ssize_t n_code      #   first the n_code run by instructions, children first,
                                #   then the MULs fused into an FMA (computed when read)
    cdef Py_ssize_t n_slots     # all slots, constants included
    cdef Py_ssize_t root_slot   # the root's slot
    cdef Instr* code            # instruction k writes slot n_leaves + k
    cdef int* fused_in          # per fused MUL (slot n_leaves + n_code + j): its FMA's k
    cdef double* val            # data of every slot (the last complete forward())
    cdef double* spare          # forward() computes here, then swaps with val: a replay
                                #   that raises leaves val, and so the graph, as it was
    cdef double* grd            # grad of every slot
    cdef int* by_use            # leaf slots: the n_shared used more than once (or never:
    cdef Py_ssize_t n_shared    #   a lone root), then those used once, whose grads
                                #   backward() adds to without reading them first
    cdef int* held              # op slots whose Values the user holds: written back always
    cdef Py_ssize_t n_held      # entries in held
    cdef unsigned char* is_held # per slot: 1 if in held (sync leaves those alone: they are
                                #   current, and the user may have changed them since)
    cdef int* chain             # per instruction k: how many FMAs right after it add to its
                                #   output, each to the one before (a neuron's sum); read by
                                #   forward at FMAs
    cdef int* blk               # per instruction: m at the start of a block of m neurons
                                #   (and its BLOCK_ flags right after it),
                                #   -(start + 1) at each of its activations and tails, else
                                #   0 (core/blocks.pxi)
    cdef int* lo                # per instruction k: backward may skip k down to lo[k] when
                                #   k's grad is 0 (core/replay.pxi: _skip_regions); lo[k] = k if not
    cdef int* checked           # instructions whose partials can raise (POWC, POW, LOG)
    cdef Py_ssize_t n_checked   # entries in checked
    cdef int* dirty             # instruction ranges (first, last) whose grads the last
    cdef Py_ssize_t n_dirty     #   backward() wrote: the only ones that may be nonzero
                                #   (all of them once recorded); it skips the rest
    cdef int* wide              # the starts of the blocks with more than BLOCK_NARROW FMAs
    cdef Py_ssize_t n_wide      #   per neuron, top down: zeroing a dirty range leaves their
                                #   partial sums' grads alone (core/blocks.pxi: _zero_grads)
    cdef bint finite            # every instruction's output in val is finite, so backward
                                #   skips a zero-grad run without checking its outputs
    cdef bint stale_partials    # val's partial sums in blocks lag behind: forward does not
                                #   store them (core/blocks.pxi: _fill_partials)
    cdef bint stale_partial_grads  # nor does backward store their grads
    cdef bint held_partial      # the user holds one (or its fused MUL): written back always
    cdef int* packs             # per set of blocks sharing weights, biases and tails'
    cdef Py_ssize_t n_packs     #   weights: (its first block's start, its offset in packed
                                #   or -1), noted above its blocks' flags
    cdef double* packed         # the packable sets' weights, each FMA's eight neurons side
                                #   by side (core/packs.pxi: _plan_packs), refilled by forward()
    cdef bint stale_data        # op nodes' Value.data lag behind val
    cdef bint stale_grad        # op nodes' Value.grad lag behind grd
    cdef Value _root            # the recorded root (Tape.root)
    cdef PyObject* _live_prev   # links in the list of live tapes (core/tape.pxi: _live_head),
    cdef PyObject* _live_next   #   borrowed; NULL at its ends and while not linked
    cdef object __weakref__     # users may hold weak references to a tape

    cdef int _plan(self, Value root, Py_ssize_t n, int* refs, unsigned char* mark) except -1
    cdef void _place(self, Py_ssize_t n, int* refs, unsigned char* mark) noexcept
    cdef void _compile(self, Py_ssize_t n) noexcept
    cdef void _untag(self) noexcept
    cdef void _tag(self) noexcept
    cdef void _sync(self) noexcept
    cdef inline void _fill(self, Py_ssize_t j) noexcept
    cdef void _fill_fused(self) noexcept
    cdef void _current_partials(self, int field) noexcept
    cdef void _write_back(self, int field) noexcept
    cdef void _mark_stale(self, int field) noexcept
