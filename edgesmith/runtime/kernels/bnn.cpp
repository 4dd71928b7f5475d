// Binary (XNOR-popcount) kernels for edgesmith's binary layers: sign-bit packing, GEMM and 2-D convolution.
//
// Values are ±1; a set bit means +1 (x >= 0). The dot product of two ±1 vectors of length K is
// K - 2 * popcount(a XOR b). Convolutions pack activations channels-last, 64 channels per word
// (a channel count that is not a multiple of 64 leaves zero tail bits in both operands, so XOR is zero
// there), and a patch is the concatenation of its kernel positions. Padding contributes 0, as in the
// standard-op lowering (Sign then Conv with zero padding): a padded position is a zero word in the patch,
// whose XOR with the weight counts the weight's own bits, subtracted again per border position.
//
// Three popcount paths, chosen at run time: AVX-512 VPOPCNTDQ (512 bits per instruction) when the CPU has
// it, else AVX2 (a nibble-table popcount with VPSHUFB, summed per 64-bit lane with VPSADBW: 256 bits per
// step), else a portable bit-twiddling popcount that stands for targets without a popcount instruction.
// Each patch is compared with 8 output channels at once (weights interleaved by 8: the patch word is
// broadcast, no horizontal sums); work is split over output positions with OpenMP. Plain C ABI, via ctypes.

#include <cstdint>
#include <cstring>
#include <algorithm>
#include <vector>

#if defined(__x86_64__) || defined(_M_X64)
#include <cpuid.h>
#include <immintrin.h>
#define EDGESMITH_X86 1
#endif

namespace {

inline int64_t popcount_portable(uint64_t v) {
    // SWAR popcount: no popcount instruction needed (microcontroller-class targets)
    v = v - ((v >> 1) & 0x5555555555555555ULL);
    v = (v & 0x3333333333333333ULL) + ((v >> 2) & 0x3333333333333333ULL);
    v = (v + (v >> 4)) & 0x0F0F0F0F0F0F0F0FULL;
    return static_cast<int64_t>((v * 0x0101010101010101ULL) >> 56);
}

// What the CPU and the OS offer, read once from CPUID and XCR0 (not __builtin_cpu_supports: its data come
// from the compiler's runtime library, which some toolchains leave out, and the build silently ran portable).
// An AVX state the OS does not save (XCR0) counts as absent.
struct Cpu {
    bool popcnt = false, avx2 = false, avx512f = false, avx512vl = false, vpopcntdq = false;
};

const Cpu& cpu() {
    static const Cpu found = [] {
        Cpu c;
#ifdef EDGESMITH_X86
        unsigned a = 0, b = 0, cx = 0, d = 0;
        if (!__get_cpuid(1, &a, &b, &cx, &d)) return c;
        c.popcnt = (cx >> 23) & 1;
        const bool osxsave = (cx >> 27) & 1, avx = (cx >> 28) & 1;
        uint64_t xcr0 = 0;
        if (osxsave) {
            unsigned lo = 0, hi = 0;
            __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
            xcr0 = (static_cast<uint64_t>(hi) << 32) | lo;
        }
        const bool ymm = avx && (xcr0 & 0x6) == 0x6, zmm = ymm && (xcr0 & 0xE0) == 0xE0;
        if (__get_cpuid_max(0, nullptr) >= 7 && __get_cpuid_count(7, 0, &a, &b, &cx, &d)) {
            c.avx2 = ymm && ((b >> 5) & 1);
            c.avx512f = zmm && ((b >> 16) & 1);
            c.avx512vl = zmm && ((b >> 31) & 1);
            c.vpopcntdq = zmm && ((cx >> 14) & 1);
        }
#endif
        return c;
    }();
    return found;
}

// The wide path: every instruction set its functions are compiled for (the dot kernels: AVX-512F + VPOPCNTDQ;
// the epilogue: AVX-512VL and AVX2 as well), each checked before use
bool cpu_has_vpopcntdq() { return cpu().avx512f && cpu().vpopcntdq && cpu().avx512vl && cpu().avx2; }

bool cpu_has_avx512f() { return cpu().avx512f; }

#ifdef EDGESMITH_X86
__attribute__((target("avx512f")))
uint64_t pack64_avx512(const float* src) {  // 64 floats -> 64 sign bits (x >= 0), 16 per compare
    const __m512 zero = _mm512_setzero_ps();
    uint64_t w = 0;
    for (int j = 0; j < 4; ++j)
        w |= static_cast<uint64_t>(_mm512_cmp_ps_mask(_mm512_loadu_ps(src + 16 * j), zero, _CMP_GE_OQ)) << (16 * j);
    return w;
}
#endif

#ifdef EDGESMITH_X86
// signs of 16 positions x all channels of image b -> their channels-last words (one work item of the packing)
__attribute__((target("avx512f")))
void pack_chunk_avx512(const float* x, int64_t c, int64_t hw, int64_t cw, uint64_t* out, int64_t b, int64_t k) {
    const int64_t p0 = k * 16;
    const int left = static_cast<int>(std::min<int64_t>(16, hw - p0));
    const __mmask16 tail = static_cast<__mmask16>(left == 16 ? 0xFFFF : (1u << left) - 1u);
    const __m512 zero = _mm512_setzero_ps();
    alignas(64) uint64_t words[16];
    for (int64_t cb = 0; cb < cw; ++cb) {
        __m512i lo = _mm512_setzero_si512(), hi = _mm512_setzero_si512();
        const int64_t c_end = std::min(c, cb * 64 + 64);
        for (int64_t ch = cb * 64; ch < c_end; ++ch) {
            const __m512 v = _mm512_maskz_loadu_ps(tail, x + (b * c + ch) * hw + p0);
            const __mmask16 m = _mm512_mask_cmp_ps_mask(tail, v, zero, _CMP_GE_OQ);
            const __m512i bit = _mm512_set1_epi64(static_cast<long long>(1ULL << (ch - cb * 64)));
            lo = _mm512_mask_or_epi64(lo, static_cast<__mmask8>(m & 0xFF), lo, bit);
            hi = _mm512_mask_or_epi64(hi, static_cast<__mmask8>(m >> 8), hi, bit);
        }
        _mm512_store_si512(words, lo);
        _mm512_store_si512(words + 8, hi);
        for (int i = 0; i < left; ++i) out[(b * hw + p0 + i) * cw + cb] = words[i];
    }
}

void pack_nchw_avx512(const float* x, int64_t n, int64_t c, int64_t hw, int64_t cw, uint64_t* out, int threads) {
    const int64_t chunks = (hw + 15) / 16;
#pragma omp parallel for collapse(2) schedule(static) num_threads(std::max(1, threads)) if (n * c * hw > (1 << 15))
    for (int64_t b = 0; b < n; ++b)
        for (int64_t k = 0; k < chunks; ++k) pack_chunk_avx512(x, c, hw, cw, out, b, k);
}
#endif

bool cpu_has_popcnt() { return cpu().popcnt; }

#ifdef EDGESMITH_X86
__attribute__((target("popcnt"))) inline int64_t pop_hw(uint64_t v) { return static_cast<int64_t>(__builtin_popcountll(v)); }
#endif

inline int64_t pop(bool hw, uint64_t v) {
#ifdef EDGESMITH_X86
    if (hw) return pop_hw(v);
#endif
    return popcount_portable(v);
}

bool cpu_has_avx2() { return cpu().avx2; }

enum Level { PORTABLE = 0, AVX2 = 1, AVX512 = 2 };

// impl: 0 auto (the widest the CPU has), 1 portable, 2 avx512, 3 avx2; a forced path the CPU lacks falls back
// to the next narrower one it has
Level level(int impl) {
    if (impl == 1) return PORTABLE;
    if (impl != 3 && cpu_has_vpopcntdq()) return AVX512;
    return cpu_has_avx2() ? AVX2 : PORTABLE;
}

// rows x words -> ceil(rows/8) x words x 8: word q of rows 8b..8b+7 side by side (zero rows pad the last block)
void interleave8(const uint64_t* w, int64_t rows, int64_t words, uint64_t* out) {
    const int64_t nb = (rows + 7) / 8;
    std::memset(out, 0, sizeof(uint64_t) * nb * words * 8);
    for (int64_t r = 0; r < rows; ++r)
        for (int64_t q = 0; q < words; ++q) out[((r / 8) * words + q) * 8 + (r % 8)] = w[r * words + q];
}

// diff[l] = popcount(patch XOR row l of the block), over `words` words, for the block's 8 rows at once:
// each patch word is broadcast to 8 lanes and XORed with word q of 8 rows, so no horizontal sum is needed
void dot8_portable(const uint64_t* patch, const uint64_t* block, int64_t words, int64_t* diff) {
    for (int l = 0; l < 8; ++l) diff[l] = 0;
    for (int64_t q = 0; q < words; ++q) {
        const uint64_t p = patch[q];
        for (int l = 0; l < 8; ++l) diff[l] += popcount_portable(p ^ block[q * 8 + l]);
    }
}

#ifdef EDGESMITH_X86
__attribute__((target("avx512f,avx512vpopcntdq")))
void dot8_avx512(const uint64_t* patch, const uint64_t* block, int64_t words, int64_t* diff) {
    __m512i acc0 = _mm512_setzero_si512(), acc1 = _mm512_setzero_si512();
    int64_t q = 0;
    for (; q + 2 <= words; q += 2) {  // two chains: popcount latency overlaps
        acc0 = _mm512_add_epi64(acc0, _mm512_popcnt_epi64(_mm512_xor_si512(_mm512_set1_epi64(static_cast<long long>(patch[q])),
                                                                            _mm512_loadu_si512(block + q * 8))));
        acc1 = _mm512_add_epi64(acc1, _mm512_popcnt_epi64(_mm512_xor_si512(_mm512_set1_epi64(static_cast<long long>(patch[q + 1])),
                                                                            _mm512_loadu_si512(block + (q + 1) * 8))));
    }
    if (q < words)
        acc0 = _mm512_add_epi64(acc0, _mm512_popcnt_epi64(_mm512_xor_si512(_mm512_set1_epi64(static_cast<long long>(patch[q])),
                                                                            _mm512_loadu_si512(block + q * 8))));
    _mm512_storeu_si512(diff, _mm512_add_epi64(acc0, acc1));
}
#endif

#ifdef EDGESMITH_X86
// popcount of each 64-bit lane: a 4-bit table lookup per nibble (VPSHUFB), the byte counts summed per lane (VPSADBW)
__attribute__((target("avx2"))) inline __m256i popcnt64_avx2(__m256i v) {
    const __m256i table = _mm256_setr_epi8(0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4, 0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4);
    const __m256i nibble = _mm256_set1_epi8(0x0f);
    const __m256i lo = _mm256_shuffle_epi8(table, _mm256_and_si256(v, nibble));
    const __m256i hi = _mm256_shuffle_epi8(table, _mm256_and_si256(_mm256_srli_epi16(v, 4), nibble));
    return _mm256_sad_epu8(_mm256_add_epi8(lo, hi), _mm256_setzero_si256());
}

__attribute__((target("avx2")))
void dot8_avx2(const uint64_t* patch, const uint64_t* block, int64_t words, int64_t* diff) {
    __m256i acc0 = _mm256_setzero_si256(), acc1 = _mm256_setzero_si256();  // rows 0-3 and 4-7
    for (int64_t q = 0; q < words; ++q) {
        const __m256i p = _mm256_set1_epi64x(static_cast<long long>(patch[q]));
        acc0 = _mm256_add_epi64(acc0, popcnt64_avx2(_mm256_xor_si256(p, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(block + q * 8)))));
        acc1 = _mm256_add_epi64(acc1, popcnt64_avx2(_mm256_xor_si256(p, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(block + q * 8 + 4)))));
    }
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(diff), acc0);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(diff + 4), acc1);
}
#endif

inline void dot8(Level lvl, const uint64_t* patch, const uint64_t* block, int64_t words, int64_t* diff) {
#ifdef EDGESMITH_X86
    if (lvl == AVX512) {
        dot8_avx512(patch, block, words, diff);
        return;
    }
    if (lvl == AVX2) {
        dot8_avx2(patch, block, words, diff);
        return;
    }
#endif
    dot8_portable(patch, block, words, diff);
}


// dot8 for T patches and B blocks of 8 rows at once: each weight vector is loaded once and used for T
// patches, each broadcast patch word for B blocks (the weights of a large layer live in L2, so reading them
// once per position was the bottleneck; B*T independent accumulators keep the popcount units busy)
template <int T, int B>
void dotT_portable(const uint64_t* const* patches, const uint64_t* block, int64_t bstride, int64_t words, int64_t (*diff)[8 * B]) {
    for (int b = 0; b < B; ++b)
        for (int t = 0; t < T; ++t) {
            int64_t d[8];
            dot8_portable(patches[t], block + b * bstride, words, d);
            for (int l = 0; l < 8; ++l) diff[t][b * 8 + l] = d[l];
        }
}

#ifdef EDGESMITH_X86
template <int T, int B>
__attribute__((target("avx512f,avx512vpopcntdq")))
void dotT_avx512(const uint64_t* const* patches, const uint64_t* block, int64_t bstride, int64_t words, int64_t (*diff)[8 * B]) {
    __m512i acc[B][T];
    for (int b = 0; b < B; ++b)
        for (int t = 0; t < T; ++t) acc[b][t] = _mm512_setzero_si512();
    for (int64_t q = 0; q < words; ++q) {
        __m512i wv[B];
        for (int b = 0; b < B; ++b) wv[b] = _mm512_loadu_si512(block + b * bstride + q * 8);
        for (int t = 0; t < T; ++t) {
            const __m512i pv = _mm512_set1_epi64(static_cast<long long>(patches[t][q]));
            for (int b = 0; b < B; ++b) acc[b][t] = _mm512_add_epi64(acc[b][t], _mm512_popcnt_epi64(_mm512_xor_si512(pv, wv[b])));
        }
    }
    for (int b = 0; b < B; ++b)
        for (int t = 0; t < T; ++t) _mm512_storeu_si512(diff[t] + b * 8, acc[b][t]);
}
#endif

#ifdef EDGESMITH_X86
// A full 8-position tile's results for one block of 8 channels: valid - 2 * (diff - correction), computed as
// vectors and transposed 8x8, so each channel's 8 outputs leave in one 32-byte store (they are contiguous)
__attribute__((target("avx512f,avx512vl,avx2")))
void epilogue8x8(const int64_t (*diff)[8], const int32_t* const* corr, const int32_t* valid, int32_t* dst, int64_t plane, int64_t lmax) {
    __m256i r[8];
    for (int t = 0; t < 8; ++t) {
        const __m256i d = _mm512_cvtepi64_epi32(_mm512_loadu_si512(diff[t]));
        const __m256i c = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(corr[t]));
        r[t] = _mm256_sub_epi32(_mm256_set1_epi32(valid[t]), _mm256_slli_epi32(_mm256_sub_epi32(d, c), 1));
    }
    const __m256i t0 = _mm256_unpacklo_epi32(r[0], r[1]), t1 = _mm256_unpackhi_epi32(r[0], r[1]);
    const __m256i t2 = _mm256_unpacklo_epi32(r[2], r[3]), t3 = _mm256_unpackhi_epi32(r[2], r[3]);
    const __m256i t4 = _mm256_unpacklo_epi32(r[4], r[5]), t5 = _mm256_unpackhi_epi32(r[4], r[5]);
    const __m256i t6 = _mm256_unpacklo_epi32(r[6], r[7]), t7 = _mm256_unpackhi_epi32(r[6], r[7]);
    const __m256i u0 = _mm256_unpacklo_epi64(t0, t2), u1 = _mm256_unpackhi_epi64(t0, t2);
    const __m256i u2 = _mm256_unpacklo_epi64(t1, t3), u3 = _mm256_unpackhi_epi64(t1, t3);
    const __m256i u4 = _mm256_unpacklo_epi64(t4, t6), u5 = _mm256_unpackhi_epi64(t4, t6);
    const __m256i u6 = _mm256_unpacklo_epi64(t5, t7), u7 = _mm256_unpackhi_epi64(t5, t7);
    const __m256i rows[8] = {_mm256_permute2x128_si256(u0, u4, 0x20), _mm256_permute2x128_si256(u1, u5, 0x20),
                             _mm256_permute2x128_si256(u2, u6, 0x20), _mm256_permute2x128_si256(u3, u7, 0x20),
                             _mm256_permute2x128_si256(u0, u4, 0x31), _mm256_permute2x128_si256(u1, u5, 0x31),
                             _mm256_permute2x128_si256(u2, u6, 0x31), _mm256_permute2x128_si256(u3, u7, 0x31)};
    for (int64_t l = 0; l < lmax; ++l) _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + l * plane), rows[l]);
}
#endif

#ifdef EDGESMITH_X86
template <int T, int B>
__attribute__((target("avx2")))
void dotT_avx2(const uint64_t* const* patches, const uint64_t* block, int64_t bstride, int64_t words, int64_t (*diff)[8 * B]) {
    __m256i acc[B][T][2];
    for (int b = 0; b < B; ++b)
        for (int t = 0; t < T; ++t) acc[b][t][0] = acc[b][t][1] = _mm256_setzero_si256();
    for (int64_t q = 0; q < words; ++q) {
        __m256i wv[B][2];
        for (int b = 0; b < B; ++b)
            for (int half = 0; half < 2; ++half)
                wv[b][half] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(block + b * bstride + q * 8 + half * 4));
        for (int t = 0; t < T; ++t) {
            const __m256i pv = _mm256_set1_epi64x(static_cast<long long>(patches[t][q]));
            for (int b = 0; b < B; ++b)
                for (int half = 0; half < 2; ++half)
                    acc[b][t][half] = _mm256_add_epi64(acc[b][t][half], popcnt64_avx2(_mm256_xor_si256(pv, wv[b][half])));
        }
    }
    for (int b = 0; b < B; ++b)
        for (int t = 0; t < T; ++t)
            for (int half = 0; half < 2; ++half) _mm256_storeu_si256(reinterpret_cast<__m256i*>(diff[t] + b * 8 + half * 4), acc[b][t][half]);
}
#endif

template <int T, int B>
inline void dotT(Level lvl, const uint64_t* const* patches, const uint64_t* block, int64_t bstride, int64_t words, int64_t (*diff)[8 * B]) {
#ifdef EDGESMITH_X86
    if (lvl == AVX512) {
        dotT_avx512<T, B>(patches, block, bstride, words, diff);
        return;
    }
    if (lvl == AVX2) {
        dotT_avx2<T, B>(patches, block, bstride, words, diff);
        return;
    }
#endif
    dotT_portable<T, B>(patches, block, bstride, words, diff);
}

}  // namespace

#ifndef BNN_TILE_T
#define BNN_TILE_T 8  // positions per tile
#endif
#ifndef BNN_TILE_B
#define BNN_TILE_B 1  // blocks of 8 output channels per tile
#endif

extern "C" {

int bnn_has_vpopcntdq() { return cpu_has_vpopcntdq() ? 1 : 0; }

int bnn_impl_used(int impl) {  // 1 portable, 2 avx512, 3 avx2
    const Level lvl = level(impl);
    return lvl == AVX512 ? 2 : lvl == AVX2 ? 3 : 1;
}

// rows x k floats -> rows x ceil(k/64) words, bit j of word w = (x[row, 64w + j] >= 0)
void bnn_pack_signs(const float* x, int64_t rows, int64_t k, uint64_t* out) {
    const int64_t words = (k + 63) / 64;
    const bool wide = cpu_has_avx512f();
#pragma omp parallel for schedule(static) if (rows * k > (1 << 16))
    for (int64_t r = 0; r < rows; ++r) {
        const float* src = x + r * k;
        uint64_t* dst = out + r * words;
        int64_t i = 0;
#ifdef EDGESMITH_X86
        if (wide) {
            for (; i + 64 <= k; i += 64) dst[i >> 6] = pack64_avx512(src + i);
        }
#endif
        if (i < k) {
            std::memset(dst + (i >> 6), 0, sizeof(uint64_t) * (words - (i >> 6)));
            for (; i < k; ++i)
                if (src[i] >= 0.0f) dst[i >> 6] |= (1ULL << (i & 63));
        }
    }
}

// N x C x H x W floats -> N x H x W x CW words (channels-last sign bits), without a transposed copy: 16 pixels
// of one channel are contiguous, one compare gives their 16 bits, OR-ed into the pixels' words as bit c.
void bnn_pack_nchw(const float* x, int64_t n, int64_t c, int64_t h, int64_t w, uint64_t* out, int threads) {
    const int64_t hw = h * w, cw = (c + 63) / 64;
#ifdef EDGESMITH_X86
    if (cpu_has_avx512f()) {
        pack_nchw_avx512(x, n, c, hw, cw, out, threads);
        return;
    }
#endif
    std::memset(out, 0, sizeof(uint64_t) * n * hw * cw);
    for (int64_t b = 0; b < n; ++b)
        for (int64_t ch = 0; ch < c; ++ch)
            for (int64_t p = 0; p < hw; ++p)
                if (x[(b * c + ch) * hw + p] >= 0.0f) out[(b * hw + p) * cw + (ch >> 6)] |= 1ULL << (ch & 63);
}

// out[i, j] = k - 2 * popcount(a[i] ^ b[j]): the ±1 dot product of row i of A and row j of B
void bnn_gemm(const uint64_t* a, const uint64_t* b, int64_t m, int64_t n, int64_t words, int64_t k,
              int32_t* out, int threads, int impl) {
    const Level lvl = level(impl);
    std::vector<uint64_t> wb((n + 7) / 8 * words * 8);
    interleave8(b, n, words, wb.data());
    const int64_t nb = (n + 7) / 8;
#pragma omp parallel for num_threads(std::max(1, threads)) schedule(static)
    for (int64_t i = 0; i < m; ++i) {
        int64_t diff[8];
        for (int64_t ob = 0; ob < nb; ++ob) {
            dot8(lvl, a + i * words, wb.data() + ob * words * 8, words, diff);
            for (int64_t l = 0; l < 8 && ob * 8 + l < n; ++l) out[i * n + ob * 8 + l] = static_cast<int32_t>(k - 2 * diff[l]);
        }
    }
}

// Weights of a conv prepared once (at load time): interleaved by 8 output channels (ceil(O/8) x KH*KW*CW x 8)
// and the popcount of each (output channel, kernel position) block (O x KH*KW).
void bnn_prepare_conv(const uint64_t* w, int64_t o, int64_t kh, int64_t kw, int64_t cw, uint64_t* wb, int64_t* block_pop) {
    const int64_t kwords = kh * kw * cw;
    interleave8(w, o, kwords, wb);
    for (int64_t oc = 0; oc < o; ++oc)
        for (int64_t p = 0; p < kh * kw; ++p) {
            int64_t s = 0;
            for (int64_t q = 0; q < cw; ++q) s += popcount_portable(w[oc * kwords + p * cw + q]);
            block_pop[oc * kh * kw + p] = s;
        }
}

// x: N x H x W x CW packed channels (C real channels); wb, block_pop from bnn_prepare_conv; out: N x O x OH x OW
// The convolution; with ``xf`` (float NCHW) the sign packing into ``xpack`` runs in the same parallel region
// (one fork-join per layer instead of two: at 14x14 the second one cost as much as a tenth of the layer)
static void conv2d_impl(const float* xf, uint64_t* xpack, const uint64_t* wbp, const int64_t* block_pop, int64_t n, int64_t h, int64_t wd,
                        int64_t cw, int64_t c, int64_t o, int64_t kh, int64_t kw, int64_t sh, int64_t sw, int64_t ph, int64_t pw,
                        int64_t dh, int64_t dw, int32_t* out, int threads, int impl) {
    const Level lvl = level(impl);
    const uint64_t* x = xpack;
#ifdef EDGESMITH_X86
    const bool pack_inside = xf != nullptr && cpu_has_avx512f();
#else
    const bool pack_inside = false;
#endif
    if (xf != nullptr && !pack_inside) bnn_pack_nchw(xf, n, c, h, wd, xpack, threads);
    const int64_t oh = (h + 2 * ph - dh * (kh - 1) - 1) / sh + 1;
    const int64_t ow = (wd + 2 * pw - dw * (kw - 1) - 1) / sw + 1;
    const int64_t kk = kh * kw, kwords = kk * cw, nb = (o + 7) / 8, plane = oh * ow;
    constexpr int T = BNN_TILE_T, B = BNN_TILE_B;
    const int64_t positions = n * plane, tiles = (positions + T - 1) / T;
    // Padding: a tap outside the image is a zero word, so the XOR counted the weight's own bits there; the
    // correction depends only on which taps of a position fall outside (a handful of patterns: interior,
    // edges, corners), so it is computed once per pattern and channel, not per output
    // a position's outside taps = its row's outside taps | its column's: patterns are (row class, column class)
    // pairs, found in O(oh + ow) (kernels up to 8x8: a mask bit per tap)
    auto classes = [](int64_t extent, int64_t out_extent, int64_t stride, int64_t pad, int64_t dil, int64_t k, std::vector<uint64_t>& kinds) {
        std::vector<int64_t> id(out_extent);
        for (int64_t i = 0; i < out_extent; ++i) {
            uint64_t m = 0;
            for (int64_t r = 0; r < k; ++r) {
                const int64_t at = i * stride - pad + r * dil;
                if (at < 0 || at >= extent) m |= uint64_t(1) << r;
            }
            auto it = std::find(kinds.begin(), kinds.end(), m);
            id[i] = it - kinds.begin();
            if (it == kinds.end()) kinds.push_back(m);
        }
        return id;
    };
    std::vector<uint64_t> row_kinds, col_kinds;
    const std::vector<int64_t> row_id = classes(h, oh, sh, ph, dh, kh, row_kinds), col_id = classes(wd, ow, sw, pw, dw, kw, col_kinds);
    const int64_t ncol = static_cast<int64_t>(col_kinds.size());
    std::vector<uint64_t> masks;  // per pattern, its outside taps as bits (kernels up to 64 taps), else empty
    std::vector<int64_t> outside;
    for (uint64_t rm : row_kinds)
        for (uint64_t cm : col_kinds) {
            uint64_t m = 0;
            int64_t count = 0;
            for (int64_t r = 0; r < kh; ++r)
                for (int64_t s2 = 0; s2 < kw; ++s2)
                    if ((rm >> r & 1) || (cm >> s2 & 1)) {
                        ++count;
                        if (kk <= 64) m |= uint64_t(1) << (r * kw + s2);
                    }
            masks.push_back(m);
            outside.push_back(count);
        }
    const int64_t np = static_cast<int64_t>(masks.size()), o8 = nb * 8;  // rows padded to whole blocks (vector loads)
    std::vector<int32_t> corr(np * o8, 0), valid_of(np);
    for (int64_t pi = 0; pi < np; ++pi) valid_of[pi] = static_cast<int32_t>((kk - outside[pi]) * c);
#pragma omp parallel num_threads(std::max(1, threads))
    {
#ifdef EDGESMITH_X86
        if (pack_inside) {
            const int64_t chunks = (h * wd + 15) / 16;
#pragma omp for collapse(2) schedule(static)
            for (int64_t b = 0; b < n; ++b)
                for (int64_t k = 0; k < chunks; ++k) pack_chunk_avx512(xf, c, h * wd, cw, xpack, b, k);
        }
#endif
#pragma omp for schedule(static)
        for (int64_t oc = 0; oc < o; ++oc)
            for (int64_t pi = 0; pi < np; ++pi) {
                int64_t s3 = 0;
                if (kk <= 64) {
                    for (uint64_t m = masks[pi]; m; m &= m - 1) s3 += block_pop[oc * kk + __builtin_ctzll(m)];  // the outside taps only
                } else {
                    const uint64_t rm = row_kinds[pi / ncol], cm = col_kinds[pi % ncol];
                    for (int64_t r = 0; r < kh; ++r)
                        for (int64_t s2 = 0; s2 < kw; ++s2)
                            if ((rm >> r & 1) || (cm >> s2 & 1)) s3 += block_pop[oc * kk + r * kw + s2];
                }
                corr[pi * o8 + oc] = static_cast<int32_t>(s3);
            }
        std::vector<uint64_t> patch(T * kwords);
        int64_t diff[T][8 * B], diff1[T][8];
        const uint64_t* pp[T];
        for (int t = 0; t < T; ++t) pp[t] = patch.data() + t * kwords;
        // NOTE: threads split the positions; splitting the output channels instead (each thread streaming half
        // the weights) measured slower: 0.061 vs 0.051 ms at 14x14. Tiles are dealt round-robin: in blocks, the
        // thread with the half-empty last tile had 12% fewer positions than the other (14x14: 104 vs 92)
#pragma omp for schedule(static, 1)
        for (int64_t tile = 0; tile < tiles; ++tile) {
            const int64_t ob_begin = 0, ob_end = nb;
            int64_t bs[T], ys[T], xs[T];
            const int32_t* cp[T];
            int32_t valid[T];
            const int used = static_cast<int>(std::min<int64_t>(T, positions - tile * T));
            int64_t b = (tile * T) / plane, y = (tile * T - b * plane) / ow, xx = tile * T - b * plane - y * ow;  // then stepped, no divisions
            for (int t = 0; t < T; ++t) {
                if (t > 0 && t < used && ++xx == ow) {  // a short last tile repeats its last position
                    xx = 0;
                    if (++y == oh) y = 0, ++b;
                }
                bs[t] = b, ys[t] = y, xs[t] = xx;
                const int64_t pi = row_id[y] * ncol + col_id[xx];
                cp[t] = corr.data() + pi * o8;
                valid[t] = valid_of[pi];
                for (int64_t r = 0; r < kh; ++r)
                    for (int64_t s2 = 0; s2 < kw; ++s2) {
                        const int64_t iy = ys[t] * sh - ph + r * dh, ix = xs[t] * sw - pw + s2 * dw;
                        uint64_t* dst = patch.data() + t * kwords + (r * kw + s2) * cw;
                        if (iy < 0 || iy >= h || ix < 0 || ix >= wd) {
                            for (int64_t q = 0; q < cw; ++q) dst[q] = 0;  // NOTE: loops, not memcpy: narrow layers copy 1 word
                        } else {
                            const uint64_t* src = x + ((bs[t] * h + iy) * wd + ix) * cw;
                            for (int64_t q = 0; q < cw; ++q) dst[q] = src[q];
                        }
                    }
            }
            const bool contiguous = bs[used - 1] == bs[0];  // the tile's positions are consecutive in one image
            const int64_t p0 = tile * T - bs[0] * plane;
            for (int64_t ob = ob_begin; ob < ob_end; ob += B) {
                const int blocks = static_cast<int>(std::min<int64_t>(B, ob_end - ob));
                if (blocks == B)
                    dotT<T, B>(lvl, pp, wbp + ob * kwords * 8, kwords * 8, kwords, diff);
                else
                    dotT<T, 1>(lvl, pp, wbp + ob * kwords * 8, kwords * 8, kwords, diff1);
                const int64_t* dbase = blocks == B ? &diff[0][0] : &diff1[0][0];
                const int dstride = blocks == B ? 8 * B : 8;
                const int64_t lmax = std::min<int64_t>(8 * blocks, o - ob * 8);
#ifdef EDGESMITH_X86
                if constexpr (T == 8 && B == 1) {
                    if (lvl == AVX512 && contiguous && used == T) {
                        const int32_t* cps[8];
                        for (int t = 0; t < 8; ++t) cps[t] = cp[t] + ob * 8;
                        epilogue8x8(reinterpret_cast<const int64_t (*)[8]>(dbase), cps, valid, out + (bs[0] * o + ob * 8) * plane + p0, plane, lmax);
                        continue;
                    }
                }
#endif
                for (int64_t l = 0; l < lmax; ++l) {
                    const int64_t oc = ob * 8 + l;
                    if (contiguous) {
                        int32_t* dst = out + (bs[0] * o + oc) * plane + p0;
                        for (int t = 0; t < used; ++t)
                            dst[t] = valid[t] - 2 * (static_cast<int32_t>(dbase[t * dstride + l]) - cp[t][oc]);
                    } else {
                        for (int t = 0; t < used; ++t)
                            out[(bs[t] * o + oc) * plane + ys[t] * ow + xs[t]] =
                                valid[t] - 2 * (static_cast<int32_t>(dbase[t * dstride + l]) - cp[t][oc]);
                    }
                }
            }
        }
    }
}

void bnn_conv2d_prepared(const uint64_t* x, const uint64_t* wbp, const int64_t* block_pop, int64_t n, int64_t h, int64_t wd,
                         int64_t cw, int64_t c, int64_t o, int64_t kh, int64_t kw, int64_t sh, int64_t sw, int64_t ph, int64_t pw,
                         int64_t dh, int64_t dw, int32_t* out, int threads, int impl) {
    conv2d_impl(nullptr, const_cast<uint64_t*>(x), wbp, block_pop, n, h, wd, cw, c, o, kh, kw, sh, sw, ph, pw, dh, dw, out, threads, impl);
}

// Float activations in (NCHW), their sign bits packed into ``scratch`` ([N, H, W, CW] words) on the way
void bnn_conv2d_float(const float* x, uint64_t* scratch, const uint64_t* wbp, const int64_t* block_pop, int64_t n, int64_t h, int64_t wd,
                      int64_t cw, int64_t c, int64_t o, int64_t kh, int64_t kw, int64_t sh, int64_t sw, int64_t ph, int64_t pw,
                      int64_t dh, int64_t dw, int32_t* out, int threads, int impl) {
    conv2d_impl(x, scratch, wbp, block_pop, n, h, wd, cw, c, o, kh, kw, sh, sw, ph, pw, dh, dw, out, threads, impl);
}

// The same, preparing the weights on every call (tests; a runtime prepares once)
void bnn_conv2d(const uint64_t* x, const uint64_t* w, int64_t n, int64_t h, int64_t wd, int64_t cw, int64_t c,
                int64_t o, int64_t kh, int64_t kw, int64_t sh, int64_t sw, int64_t ph, int64_t pw, int64_t dh, int64_t dw,
                int32_t* out, int threads, int impl) {
    std::vector<uint64_t> wb((o + 7) / 8 * kh * kw * cw * 8);
    std::vector<int64_t> block_pop(o * kh * kw);
    bnn_prepare_conv(w, o, kh, kw, cw, wb.data(), block_pop.data());
    bnn_conv2d_prepared(x, wb.data(), block_pop.data(), n, h, wd, cw, c, o, kh, kw, sh, sw, ph, pw, dh, dw, out, threads, impl);
}

// MST-ordered conv (compress/mst.py), word level: the root channel in full, every other channel from its
// parent over the words where their weights differ (a word both share is skipped). order: parents before
// children; parent[c] = -1 for the root; dmask: O x kwords (w_c XOR w_parent, zero for the root); words[]
// lists each channel's differing word indices (offsets in word_ptr, O + 1 entries). Same output as
// bnn_conv2d. impl 1: portable popcount, otherwise the CPU's scalar POPCNT instruction (no SIMD: skipping
// words breaks the vector loop).
void bnn_conv2d_tree(const uint64_t* x, const uint64_t* w, const int64_t* order, const int64_t* parent, const uint64_t* dmask,
                     const int64_t* word_ptr, const int64_t* words, int64_t n, int64_t h, int64_t wd, int64_t cw, int64_t c,
                     int64_t o, int64_t kh, int64_t kw, int64_t sh, int64_t sw, int64_t ph, int64_t pw, int64_t dh, int64_t dw,
                     int32_t* out, int threads, int impl) {
    const bool hw = impl != 1 && cpu_has_popcnt();
    const int64_t oh = (h + 2 * ph - dh * (kh - 1) - 1) / sh + 1;
    const int64_t ow = (wd + 2 * pw - dw * (kw - 1) - 1) / sw + 1;
    const int64_t kwords = kh * kw * cw, plane = oh * ow;
#pragma omp parallel num_threads(std::max(1, threads))
    {
        std::vector<uint64_t> patch(kwords);
        std::vector<char> bad(kh * kw);
        std::vector<int64_t> y(o);
#pragma omp for schedule(static)
        for (int64_t pos = 0; pos < n * plane; ++pos) {
            const int64_t b = pos / plane, yy = (pos % plane) / ow, xx = pos % ow;
            int64_t nbad = 0;
            for (int64_t r = 0; r < kh; ++r)
                for (int64_t s2 = 0; s2 < kw; ++s2) {
                    const int64_t iy = yy * sh - ph + r * dh, ix = xx * sw - pw + s2 * dw;
                    uint64_t* dst = patch.data() + (r * kw + s2) * cw;
                    const bool out_of = iy < 0 || iy >= h || ix < 0 || ix >= wd;
                    bad[r * kw + s2] = out_of;
                    nbad += out_of;
                    if (out_of) std::memset(dst, 0, sizeof(uint64_t) * cw);
                    else std::memcpy(dst, x + ((b * h + iy) * wd + ix) * cw, sizeof(uint64_t) * cw);
                }
            const int64_t root = order[0];
            int64_t dis = 0;
            for (int64_t q = 0; q < kwords; ++q)
                if (!bad[q / cw]) dis += pop(hw, patch[q] ^ w[root * kwords + q]);
            y[root] = (kh * kw - nbad) * c - 2 * dis;
            for (int64_t i = 1; i < o; ++i) {
                const int64_t ch = order[i];
                int64_t dcount = 0, disagree = 0;
                for (int64_t j = word_ptr[ch]; j < word_ptr[ch + 1]; ++j) {
                    const int64_t q = words[j];
                    if (bad[q / cw]) continue;
                    const uint64_t dm = dmask[ch * kwords + q];
                    dcount += pop(hw, dm);
                    disagree += pop(hw, (patch[q] ^ w[ch * kwords + q]) & dm);
                }
                y[ch] = y[parent[ch]] + 2 * (dcount - 2 * disagree);
            }
            for (int64_t oc = 0; oc < o; ++oc) out[(b * o + oc) * plane + yy * ow + xx] = static_cast<int32_t>(y[oc]);
        }
    }
}

}  // extern "C"
