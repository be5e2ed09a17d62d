# What lives beside the node: its label, a hand-built node's _op and _children, a
# _backward function assigned by the user, and arbitrary attributes. Twin:
# micrograd/_pure/extras.py.
#
# They sit in a side table keyed by id(node), so that the common node stays 56 bytes:
# {id: [label, op string, children tuple, user rule, attribute dict]} (EXTRA_* in the
# .pxd), present only for nodes with HAS_EXTRA, dropped by the node's dealloc.

cdef dict _extras = {}

from libc.string cimport strrchr

cdef extern from "Python.h":
    PyObject* _type_lookup "_PyType_Lookup"(_TypeSlots* type, PyObject* name)
    int PyObject_GenericSetAttr(object o, object name, PyObject* value) except -1
    bint PyFunction_Check(PyObject* o)
    PyObject* PyFunction_GET_CLOSURE(PyObject* o)
    PyObject* PyCell_GET(PyObject* o)
    bint PyCell_Check(PyObject* o)
    Py_ssize_t PyTuple_GET_SIZE(PyObject* o)
    PyObject* PyTuple_GET_ITEM(PyObject* o, Py_ssize_t i)
    PyObject* PyList_GET_ITEM(PyObject* o, Py_ssize_t i)
    PyObject* _generic_getattr "_PyObject_GenericGetAttrWithDict"(
        PyObject* o, PyObject* name, PyObject* dict, int suppress)
    PyObject* PyErr_Occurred()
    PyObject* PyErr_Format(object exc, const char* fmt, ...)
    PyObject* PyDict_GetItem(PyObject* d, PyObject* key)    # borrowed; never raises


cdef object _get_extra(Value v, int field):
    if not v._flags & HAS_EXTRA:
        return None
    return _extras[id(v)][field]


cdef int _set_extra(Value v, int field, object item) except -1:
    if not v._flags & HAS_EXTRA:
        _extras[id(v)] = [None, None, None, None, None]
        v._flags |= HAS_EXTRA
    _extras[id(v)][field] = item
    return 0


# -- attributes ----------------------------------------------------------------------
# A plain Value has no __dict__ (it would cost 8 bytes per node); names its class does
# not define are kept in the node's attribute dict here. Subclass instances that have a
# __dict__ use it, as any Python object does.

cdef bint _own_attribute(object v, object name) noexcept:
    """Is name an attribute the class defines (data, grad, label, methods...)?"""
    return _type_lookup(_type_of(<PyObject*>v), <PyObject*>name) != NULL


cdef int _set_attribute(Value v, object name, object value) except -1:
    if type(name) is not str:
        raise TypeError("attribute name must be string, not '%s'" % type(name).__name__)
    if type(v) is not Value or _own_attribute(v, name):
        PyObject_GenericSetAttr(v, name, <PyObject*>value)   # descriptors, __dict__
        return 0
    attrs = _get_extra(v, EXTRA_ATTRS)
    if attrs is None:
        attrs = {}
        _set_extra(v, EXTRA_ATTRS, attrs)
    attrs[name] = value
    return 0


cdef int _del_attribute(Value v, object name) except -1:
    if type(name) is not str:
        raise TypeError("attribute name must be string, not '%s'" % type(name).__name__)
    if type(v) is not Value or _own_attribute(v, name):
        PyObject_GenericSetAttr(v, name, NULL)
        return 0
    attrs = _get_extra(v, EXTRA_ATTRS)
    if attrs is None or name not in attrs:
        raise AttributeError("'%s' object has no attribute '%s'" % (type(v).__name__, name))
    del attrs[name]
    return 0


cdef PyObject* _value_getattro(PyObject* o, PyObject* name) noexcept:
    """tp_getattro: the generic lookup, then the node's own attributes. Written in C and
    installed by _install_slots, not as __getattr__: a failed lookup (numpy probes its
    operands for __array_priority__ and the like) then costs no Python frame."""
    cdef PyObject* found = _generic_getattr(o, name, NULL, 1)     # 1: no error if missing
    cdef const char* cls
    cdef const char* dot
    if found != NULL or PyErr_Occurred() != NULL:
        return found
    if (<Value>o)._flags & HAS_EXTRA:
        found = _own_value(<Value>o, name)
        if found != NULL:
            return found
    cls = _type_of(o).tp_name
    dot = strrchr(cls, 46)                                  # 46: '.'; upstream says 'Value'
    if dot != NULL:
        cls = dot + 1
    PyErr_Format(AttributeError, "'%.50s' object has no attribute '%U'", cls, name)
    return NULL


cdef PyObject* _own_value(Value v, PyObject* name) noexcept:
    """A new reference to v's attribute name from the side table, or NULL."""
    cdef object key = id(v)
    cdef PyObject* entry = PyDict_GetItem(<PyObject*>_extras, <PyObject*>key)
    cdef PyObject* attrs
    cdef PyObject* found
    if entry == NULL:
        return NULL
    attrs = PyList_GET_ITEM(entry, EXTRA_ATTRS)
    if attrs == <PyObject*>None:
        return NULL
    found = PyDict_GetItem(attrs, name)
    if found != NULL:
        Py_INCREF(<object>found)
    return found


# -- user rules ----------------------------------------------------------------------
# `out._backward = fn`, as the lecture teaches: fn usually closes over out, so out's
# entry here holds fn, and fn's cell holds out. Python's collector cannot see that cycle
# (a plain Value is not tracked: it would cost a 16-byte GC header per node), so before
# each collection the table is scanned for nodes that only their own function's cells
# still reference, and their functions are dropped: then reference counting frees them.

cdef int _set_rule(Value v, object fn) except -1:
    _set_extra(v, EXTRA_RULE, fn)
    v._flags |= USER_RULE
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


cdef void _note_rule_child(PyObject* child) noexcept:
    """A node just lost a parent: if it has a user rule, it may be garbage now (a chain
    of lecture-style nodes dropped at once is freed in one collection, not one a level)."""
    if child != <PyObject*>None and (<Value>child)._flags & USER_RULE:
        try:
            _rule_children.append(<Py_ssize_t>child)
        except BaseException:
            pass                # out of memory: the next full scan finds it


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
        garbage, _rule_children = _rule_children, []


import gc as _gc
_gc.callbacks.append(_collect_rule_cycles)
