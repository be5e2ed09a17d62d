# Packs: a layer's weights laid out for SIMD, once per forward, for every sample's block.
# C only, as the blocks (core/blocks.pxi) are: the twin runs the same arithmetic one
# instruction at a time, and every sum is the same float.
#
# A dense block runs its sums BLOCK_WAYS_DENSE at a time, each FMA a load, a multiply and
# an add per sum. Its weights are the same slots in every sample's block (the layer's
# parameters), so a forward can lay them out once, each FMA's eight weights side by side
# (_pack_weights), and every block of the layer then multiplies and adds two sums' terms
# per SSE2 instruction: the same IEEE operations, lane by lane, in the same order.
# _plan_packs finds the sets when recording: blocks that share their weights, biases and
# tails' weights with another block (_same_weights), which read those from their set's
# first block's instructions (_set_code: they stay in cache, a block's own do not); the
# sets whose weights are dense leaves (forward lays them out before it runs any
# instruction) are packed.


cdef extern from *:
    """
    #if defined(__SSE2__) || defined(_M_X64)
    #include <emmintrin.h>
    /* bit 63 set if a lane of a, b, c or d is inf or nan (x - x is nan then, else 0.0) */
    static inline uint64_t micrograd_nonfinite4(__m128d a, __m128d b, __m128d c, __m128d d) {
        __m128d f = _mm_or_pd(_mm_or_pd(_mm_sub_pd(a, a), _mm_sub_pd(b, b)),
                              _mm_or_pd(_mm_sub_pd(c, c), _mm_sub_pd(d, d)));
        return (uint64_t)(_mm_movemask_pd(_mm_cmpunord_pd(f, f)) != 0) << 63;
    }
    #else
    #include <stdint.h>
    /* the same for s[0..7] */
    static inline uint64_t micrograd_nonfinite8(const double* s) {
        int bad = 0;
        for (int k = 0; k < 8; k++)
            bad |= s[k] - s[k] != 0.0;
        return (uint64_t)bad << 63;
    }
    #endif
    /* s[k] = s[k] + pw[8i + k] * x[i] for i = 0..L-1, k = 0..7: eight sums side by side
       over packed weights; returns bit 63 set if a sum is inf or nan. With SSE2 one
       instruction multiplies or adds two sums' terms; each lane is the scalar loop's IEEE
       multiply and add, so the sums are its floats. */
    static inline uint64_t micrograd_packed_sums8(double* s, const double* pw, const double* x,
                                                  Py_ssize_t L) {
    #if defined(__SSE2__) || defined(_M_X64)
        __m128d a0 = _mm_loadu_pd(s), a1 = _mm_loadu_pd(s + 2);
        __m128d a2 = _mm_loadu_pd(s + 4), a3 = _mm_loadu_pd(s + 6);
        for (Py_ssize_t i = 0; i < L; i++, pw += 8) {
            __m128d xi = _mm_set1_pd(x[i]);
            a0 = _mm_add_pd(a0, _mm_mul_pd(_mm_loadu_pd(pw), xi));
            a1 = _mm_add_pd(a1, _mm_mul_pd(_mm_loadu_pd(pw + 2), xi));
            a2 = _mm_add_pd(a2, _mm_mul_pd(_mm_loadu_pd(pw + 4), xi));
            a3 = _mm_add_pd(a3, _mm_mul_pd(_mm_loadu_pd(pw + 6), xi));
        }
        _mm_storeu_pd(s, a0);
        _mm_storeu_pd(s + 2, a1);
        _mm_storeu_pd(s + 4, a2);
        _mm_storeu_pd(s + 6, a3);
        return micrograd_nonfinite4(a0, a1, a2, a3);
    #else
        for (Py_ssize_t i = 0; i < L; i++, pw += 8)
            for (int k = 0; k < 8; k++)
                s[k] = s[k] + pw[k] * x[i];
        return micrograd_nonfinite8(s);
    #endif
    }
    /* The same for two groups of eight at once (pw1: the second group's weights): with
       eight chains of adds in flight, the adders never wait on one. */
    static inline uint64_t micrograd_packed_sums16(double* s, const double* pw, const double* pw1,
                                                   const double* x, Py_ssize_t L) {
    #if defined(__SSE2__) || defined(_M_X64)
        __m128d a0 = _mm_loadu_pd(s), a1 = _mm_loadu_pd(s + 2);
        __m128d a2 = _mm_loadu_pd(s + 4), a3 = _mm_loadu_pd(s + 6);
        __m128d b0 = _mm_loadu_pd(s + 8), b1 = _mm_loadu_pd(s + 10);
        __m128d b2 = _mm_loadu_pd(s + 12), b3 = _mm_loadu_pd(s + 14);
        for (Py_ssize_t i = 0; i < L; i++, pw += 8, pw1 += 8) {
            __m128d xi = _mm_set1_pd(x[i]);
            a0 = _mm_add_pd(a0, _mm_mul_pd(_mm_loadu_pd(pw), xi));
            a1 = _mm_add_pd(a1, _mm_mul_pd(_mm_loadu_pd(pw + 2), xi));
            a2 = _mm_add_pd(a2, _mm_mul_pd(_mm_loadu_pd(pw + 4), xi));
            a3 = _mm_add_pd(a3, _mm_mul_pd(_mm_loadu_pd(pw + 6), xi));
            b0 = _mm_add_pd(b0, _mm_mul_pd(_mm_loadu_pd(pw1), xi));
            b1 = _mm_add_pd(b1, _mm_mul_pd(_mm_loadu_pd(pw1 + 2), xi));
            b2 = _mm_add_pd(b2, _mm_mul_pd(_mm_loadu_pd(pw1 + 4), xi));
            b3 = _mm_add_pd(b3, _mm_mul_pd(_mm_loadu_pd(pw1 + 6), xi));
        }
        _mm_storeu_pd(s, a0);
        _mm_storeu_pd(s + 2, a1);
        _mm_storeu_pd(s + 4, a2);
        _mm_storeu_pd(s + 6, a3);
        _mm_storeu_pd(s + 8, b0);
        _mm_storeu_pd(s + 10, b1);
        _mm_storeu_pd(s + 12, b2);
        _mm_storeu_pd(s + 14, b3);
        return micrograd_nonfinite4(a0, a1, a2, a3) | micrograd_nonfinite4(b0, b1, b2, b3);
    #else
        return micrograd_packed_sums8(s, pw, x, L) | micrograd_packed_sums8(s + 8, pw1, x, L);
    #endif
    }
    """
    uint64_t _packed_sums8 "micrograd_packed_sums8"(double* s, const double* pw, const double* x,
                                                    Py_ssize_t L) noexcept nogil
    uint64_t _packed_sums16 "micrograd_packed_sums16"(double* s, const double* pw,
                                                      const double* pw1, const double* x,
                                                      Py_ssize_t L) noexcept nogil


cdef inline uint64_t _packed_forward(Instr* e, double* o, const double* x, Py_ssize_t stride,
                                     Py_ssize_t L, const double* val, const double* pw,
                                     Py_ssize_t second) noexcept:
    """_sums_forward of BLOCK_WAYS_DENSE sums whose weights _pack_weights laid out at pw,
    and as many again from neuron `second` on (its group's weights next), if second > 0;
    e: the first sum's instructions, or its set's (_set_code), for the biases."""
    cdef double s[2 * BLOCK_WAYS_DENSE]
    cdef Py_ssize_t q, w = BLOCK_WAYS_DENSE
    cdef Instr* e1 = e + second * stride
    cdef double* o1 = o + second * stride
    cdef uint64_t bad
    for q in range(w):
        s[q] = val[e[q * stride].x]
    if second:
        for q in range(w):
            s[w + q] = val[e1[q * stride].x]
        bad = _packed_sums16(s, pw, pw + L * w, x, L)
        for q in range(w):
            o1[q * stride + L - 1] = s[w + q]
    else:
        bad = _packed_sums8(s, pw, x, L)
    for q in range(w):
        o[q * stride + L - 1] = s[q]
    return bad


cdef bint _packable(Instr* code, int* blk, Py_ssize_t a, Py_ssize_t m, Py_ssize_t L,
                    Py_ssize_t stride, Py_ssize_t base) noexcept:
    """Does the block at a run eight sums at a time over dense weights that are leaves (so
    that forward can lay them out before it runs any instruction)?"""
    cdef Py_ssize_t j
    if not (blk[a + 1] & BLOCK_DENSE) or m < BLOCK_WAYS_DENSE or L <= BLOCK_NARROW:
        return False
    for j in range(m):
        if code[a + j * stride].y + L > base:
            return False
    return True


cdef bint _same_weights(Instr* code, int* chain, int* blk, Py_ssize_t a, Py_ssize_t b) noexcept:
    """Do the blocks at a and b have the same shape, weights and biases, and relu chains'
    tails the same weights, neuron by neuron? Then either one's instructions give the
    other's: the blocks of a set read those from their first (_set_code), whose
    instructions stay in cache, not each from its own."""
    cdef Py_ssize_t i, j, L = chain[a] + 1, w = _block_stride(blk, chain, a)
    cdef bint relus = (blk[a + 1] & BLOCK_RELU_CHAIN) != 0
    if (blk[a] != blk[b] or chain[a] != chain[b] or w != _block_stride(blk, chain, b)
            or relus != ((blk[b + 1] & BLOCK_RELU_CHAIN) != 0)):
        return False
    for j in range(blk[a]):
        if (code[a + j * w].x != code[b + j * w].x
                or (relus and code[a + j * w + L + 1].y != code[b + j * w + L + 1].y)):
            return False
        for i in range(L):
            if code[a + j * w + i].y != code[b + j * w + i].y:
                return False
    return True


cdef inline Instr* _set_code(Instr* code, int* blk, int* packs, Py_ssize_t a) noexcept:
    """The instructions the block at a reads its weights, biases and tails' weights from:
    its set's first block's (_same_weights), or its own."""
    cdef int s = blk[a + 1] >> BLOCK_FLAG_BITS
    return code + (packs[2 * s - 2] if s > 0 else a)


cdef Py_ssize_t _plan_packs(Instr* code, int* chain, int* blk, Py_ssize_t n, Py_ssize_t base,
                            int** packs, double** packed) except -1:
    """Find the sets of blocks that share their weights, biases and tails' weights
    (_same_weights: a layer's, in every sample's block), up to BLOCK_PACKS_MAX; a set of
    one block is none. Marks each block of a set (set + 1 above its BLOCK_FLAG_BITS),
    allocates packs and packed (the packable sets' weights), and returns how many sets
    there are."""
    cdef int first[BLOCK_PACKS_MAX]         # each set's first block
    cdef int uses[BLOCK_PACKS_MAX]          # and how many use it, then its number + 1 (0: none)
    cdef Py_ssize_t k = 0, s, n_sets = 0, kept = 0, size = 0, m, L, stride
    while k < n:
        if blk[k] <= 0:
            k += 1
            continue
        m, L, stride = blk[k], chain[k] + 1, _block_stride(blk, chain, k)
        s = 0
        while s < n_sets and not _same_weights(code, chain, blk, k, first[s]):
            s += 1
        if s == n_sets and n_sets < BLOCK_PACKS_MAX:
            first[s], uses[s] = k, 0
            n_sets += 1
        if s < n_sets:
            uses[s] += 1
            blk[k + 1] |= (s + 1) << BLOCK_FLAG_BITS
        k += m * stride
    packs[0] = <int*>_alloc(2 * n_sets, sizeof(int))
    for s in range(n_sets):
        k = first[s]
        if uses[s] >= 2:
            m, L, stride = blk[k], chain[k] + 1, _block_stride(blk, chain, k)
            packs[0][2 * kept] = k
            packs[0][2 * kept + 1] = -1     # (the same for every block of the set)
            if _packable(code, blk, k, m, L, stride, base):
                packs[0][2 * kept + 1] = size
                size += (m + BLOCK_WAYS_DENSE - 1) // BLOCK_WAYS_DENSE * L * BLOCK_WAYS_DENSE
            kept += 1
        uses[s] = kept if uses[s] >= 2 else 0
    packed[0] = <double*>_alloc(size, sizeof(double))
    k = 0
    while k < n:                            # renumber: the kept sets, or none
        if blk[k] <= 0:
            k += 1
            continue
        s = blk[k + 1] >> BLOCK_FLAG_BITS
        if s > 0:
            blk[k + 1] &= (1 << BLOCK_FLAG_BITS) - 1
            blk[k + 1] |= uses[s - 1] << BLOCK_FLAG_BITS
        k += blk[k] * _block_stride(blk, chain, k)
    return kept


cdef inline const double* _packed_of(int* blk, int* packs, const double* packed,
                                     Py_ssize_t a) noexcept:
    """The block at a's packed weights, or NULL."""
    cdef int s = blk[a + 1] >> BLOCK_FLAG_BITS
    return packed + packs[2 * s - 1] if s > 0 and packs[2 * s - 1] >= 0 else NULL


cdef void _pack_weights(Instr* code, int* chain, int* blk, const double* val, double* packed,
                        int* packs, Py_ssize_t n_packs) noexcept:
    """Lay out each set's weights from the leaves' values in val: per group of eight
    neurons, as _block_forward runs them, each FMA's eight weights side by side."""
    cdef Py_ssize_t s, a, m, L, stride, j, i, q
    cdef double* pw
    for s in range(n_packs):
        if packs[2 * s + 1] < 0:            # a set whose weights are not packable
            continue
        a, pw = packs[2 * s], packed + packs[2 * s + 1]
        m, L, stride = blk[a], chain[a] + 1, _block_stride(blk, chain, a)
        j = 0
        while j < m:
            if j + BLOCK_WAYS_DENSE > m:
                j = m - BLOCK_WAYS_DENSE
            for i in range(L):
                for q in range(BLOCK_WAYS_DENSE):
                    pw[q] = val[code[a + (j + q) * stride].y + i]
                pw += BLOCK_WAYS_DENSE
            j += BLOCK_WAYS_DENSE
