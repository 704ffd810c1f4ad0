/*
 * half.h - IEEE binary16 (FP16) and bfloat16 (BF16) to and from float32,
 * and little-endian tensor loads, for the Open Inference Protocol codec.
 * Widening (FP16/BF16 -> FP32) is exact for every value, subnormals, zeros,
 * infinities and NaN included.  Narrowing (FP32 -> FP16/BF16) rounds to
 * nearest, ties to even, overflows to infinity and keeps NaN a (quiet) NaN.
 * Pure functions: no allocation, no state, thread-safe.
 */
#ifndef MBX_CODEC_HALF_H
#define MBX_CODEC_HALF_H

#include <stddef.h>
#include <stdint.h>

/* Exact widening of one value given as its bit pattern. */
float mbx_f16_to_f32(uint16_t h);
float mbx_bf16_to_f32(uint16_t b);
/* Round-to-nearest-even narrowing; returns the bit pattern. */
uint16_t mbx_f32_to_f16(float f);
uint16_t mbx_f32_to_bf16(float f);

/*
 * The bulk FP16/BF16 loads and stores use F16C and AVX2 when the CPU has
 * them (x86), with the same results as the scalar code, bit for bit.
 * mbx_half_set_simd(0) makes them use the scalar code only (a hook for the
 * tests that compare the two; process-wide, atomic), 1 restores the
 * default.  mbx_half_simd_active() is 1 when the SIMD paths are in use.
 */
void mbx_half_set_simd(int enabled);
int mbx_half_simd_active(void);

/* 1 on a little-endian host (the byte order of every binary tensor). */
int mbx_host_is_little_endian(void);

/*
 * Bulk loads of n little-endian elements at src (any alignment) into dst
 * as float32.  Each returns the index of the first element that is NaN or
 * infinite (f64: or beyond float32's range, so it would become infinite), or n when
 * there is none; elements after that one may be left unwritten.
 */
size_t mbx_load_f16(const void *src, size_t n, float *dst);
size_t mbx_load_bf16(const void *src, size_t n, float *dst);
size_t mbx_load_f32(const void *src, size_t n, float *dst);
size_t mbx_load_f64(const void *src, size_t n, float *dst);

/* Bulk stores of n float32 values as little-endian FP16, BF16 or FP32 at dst (any alignment). */
void mbx_store_f16(const float *src, size_t n, void *dst);
void mbx_store_bf16(const float *src, size_t n, void *dst);
void mbx_store_f32(const float *src, size_t n, void *dst);

#endif
