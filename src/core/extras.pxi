# What lives beside the node: its label, a hand-built node's _op and _children, a
# _backward function assigned by the user, and arbitrary attributes. Twin:
# micrograd/_pure/extras.py.
#
# They sit in a side table keyed by id(node), so that the common node stays 56 bytes:
# {id: [label, op string, children tuple, user rule, attribute dict]} (EXTRA_* in the
# .pxd), present only for nodes with HAS_EXTRA, dropped by the node's dealloc.

cdef dict _extras = {}

cdef extern from "Python.h":
    PyObject* _type_lookup "_PyType_Lookup"(_TypeSlots* type, PyObject* name)
    int PyObject_GenericSetAttr(object o, object name, PyObject* value) noexcept
    bint PyUnicode_CheckExact(PyObject* o)
    bint PyFunction_Check(PyObject* o)
    PyObject* PyFunction_GET_CLOSURE(PyObject* o)
    PyObject* PyCell_GET(PyObject* o)
    bint PyCell_Check(PyObject* o)
    Py_ssize_t PyTuple_GET_SIZE(PyObject* o)
    PyObject* PyTuple_GET_ITEM(PyObject* o, Py_ssize_t i)
    PyObject* PyList_GET_ITEM(PyObject* o, Py_ssize_t i)


cdef object _get_extra(Value v, int field):
    if not v._flags & HAS_EXTRA:
        return None
    return _extras[id(v)][field]


cdef int _set_extra(Value v, int field, object item) except -1:
    if not v._flags & HAS_EXTRA:
        _extras[id(v)] = [None] * N_EXTRAS
        v._flags |= HAS_EXTRA
    _extras[id(v)][field] = item
    return 0


# -- attributes ----------------------------------------------------------------------
# A plain Value has no __dict__ (it would cost 8 bytes per node). The first time a name
# the class does not define is set on a plain Value, an _Attribute descriptor for it is
# added to the class; it keeps each node's value in the node's attribute dict here (or
# in the instance __dict__ of a subclass). Attribute lookup itself stays CPython's
# generic one: a name never set costs nothing, and numpy's probes of its operands for
# __array_priority__ and the like stay as cheap as on any object.

cdef class _Attribute:
    """Value.<name> for a name users set on nodes: each node's own value, or AttributeError."""
    cdef str name

    def __init__(self, str name):
        self.name = name

    def __get__(self, obj, objtype):
        if obj is None:
            return self
        attrs = _get_extra(<Value>obj, EXTRA_ATTRS)
        if attrs is not None and self.name in attrs:
            return attrs[self.name]
        d = getattr(obj, "__dict__", None)              # a subclass instance's own
        if d is not None and self.name in d:
            return d[self.name]
        raise AttributeError("'%s' object has no attribute '%s'" % (type(obj).__name__, self.name))

    def __set__(self, obj, value):
        d = getattr(obj, "__dict__", None)
        if d is not None:
            d[self.name] = value
            return
        attrs = _get_extra(<Value>obj, EXTRA_ATTRS)
        if attrs is None:
            attrs = {}
            _set_extra(<Value>obj, EXTRA_ATTRS, attrs)
        attrs[self.name] = value

    def __delete__(self, obj):
        attrs = _get_extra(<Value>obj, EXTRA_ATTRS)
        d = getattr(obj, "__dict__", None)
        if attrs is not None and self.name in attrs:
            del attrs[self.name]
        elif d is not None and self.name in d:
            del d[self.name]
        else:
            raise AttributeError("'%s' object has no attribute '%s'" % (type(obj).__name__, self.name))


cdef int _value_setattro(PyObject* o, PyObject* name, PyObject* value) noexcept:
    """tp_setattro (value NULL: delete), installed by _install_slots: CPython's generic
    one; if a plain Value lacks the name, it first gets its _Attribute (not for special
    __names__: those the class has or has not by design)."""
    if (value != NULL and _type_of(o) == <_TypeSlots*>Value and PyUnicode_CheckExact(name)
            and _type_lookup(_type_of(o), name) == NULL and not _is_special(<object>name)):
        if _add_attribute(<object>name) < 0:
            return -1
    return PyObject_GenericSetAttr(<object>o, <object>name, value)


cdef bint _is_special(str name) noexcept:
    return name.startswith("__") and name.endswith("__")


cdef int _add_attribute(str name) noexcept:
    try:
        _add_class_attribute(name, _Attribute(name))
    except BaseException:
        return -1               # the error stays set for the caller
    return 0


cdef int _add_class_attribute(str name, object descriptor) except -1:
    cdef dict d = <dict>(<_TypeSlots*>Value).tp_dict
    d[name] = descriptor
    PyType_Modified(Value)          # the type's attribute cache must forget the miss
    return 0


# -- user rules ----------------------------------------------------------------------
# `out._backward = fn`, as the lecture teaches: fn usually closes over out, so out's
# entry here holds fn, and fn's cell holds out. Python's collector cannot see that cycle
# (a plain Value is not tracked: it would cost a 16-byte GC header per node), so before
# each collection the table is scanned for nodes that only their own function's cells
# still reference, and their functions are dropped: then reference counting frees them.

# Until a _backward is assigned, no node has USER_RULE: dealloc and the walk (see
# _python_rules_possible) then skip the checks for one.
cdef bint _python_rules = False


cdef int _set_rule(Value v, object fn) except -1:
    global _python_rules
    _set_extra(v, EXTRA_RULE, fn)
    v._flags |= USER_RULE
    _python_rules = True
    return 0


cdef int _clear_rule(Value v) except -1:
    if v._flags & USER_RULE:
        v._flags &= ~USER_RULE
        _extras[id(v)][EXTRA_RULE] = None
    return 0


cdef Py_ssize_t _self_cells(PyObject* node, PyObject* fn) noexcept:
    """How many of fn's closure cells refer to node and are held by nothing else but fn;
    0 unless fn itself and its closure are held only once (by the table and by fn)."""
    cdef PyObject* closure
    cdef PyObject* cell
    cdef Py_ssize_t i, n = 0
    if not PyFunction_Check(fn) or Py_REFCNT(fn) != 1:
        return 0
    closure = PyFunction_GET_CLOSURE(fn)
    if closure == NULL or Py_REFCNT(closure) != 1:
        return 0
    for i in range(PyTuple_GET_SIZE(closure)):
        cell = PyTuple_GET_ITEM(closure, i)
        if PyCell_Check(cell) and PyCell_GET(cell) == node:
            if Py_REFCNT(cell) != 1:
                return 0
            n += 1
    return n


cdef bint _only_self_held(object key, list entry) noexcept:
    cdef PyObject* node = <PyObject*><Py_ssize_t>key
    cdef Py_ssize_t n
    if not (<Value>node)._flags & USER_RULE or len(entry) != N_EXTRAS:
        return False
    n = _self_cells(node, PyList_GET_ITEM(<PyObject*>entry, EXTRA_RULE))  # borrowed: no
    return n > 0 and Py_REFCNT(node) == n                                  # count of ours


cdef list _rule_children = []     # ids of nodes with a user rule whose parent died


cdef inline void _note_rule_child(PyObject* child) noexcept:
    """A node just lost a parent: if it has a user rule, it may be garbage now (a chain
    of lecture-style nodes dropped at once is freed in one collection, not one a level)."""
    if child != <PyObject*>None and (<Value>child)._flags & USER_RULE:
        _remember_rule_child(child)


cdef void _remember_rule_child(PyObject* child) noexcept:
    try:
        _rule_children.append(<Py_ssize_t>child)
    except BaseException:
        pass                    # out of memory: the next full scan finds it


def _collect_rule_cycles(phase, info):
    """gc callback: drop the functions of nodes that only they keep alive."""
    global _rule_children
    if phase != "start" or not _extras:
        return
    _rule_children = []
    garbage = [key for key, entry in _extras.items() if _only_self_held(key, entry)]
    while garbage:
        for key in garbage:
            # checked again: dropping one function runs finalizers, which may change others
            entry = _extras.get(key)
            if entry is not None and _only_self_held(key, entry):
                (<Value><PyObject*><Py_ssize_t>key)._flags &= ~USER_RULE
                entry[EXTRA_RULE] = None    # frees fn, its cells, then the node
            # A freed node's entry, held here, still holds the children only it kept: they
            # must die now, before the next key's entry is fetched (it may be one of them)
            entry = None
        garbage, _rule_children = _rule_children, []


import gc as _gc
_gc.callbacks.append(_collect_rule_cycles)
