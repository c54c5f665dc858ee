/*
 * GenMC model of the stats FDB seqlock (vswitch/observability/stats.cpp: StatsSlice::write_fdb / read_fdb),
 * mirroring the code's memory orders label by label:
 *   writer: seq.store(odd, relaxed); fence(release) [S1]; entry stores (relaxed);
 *           seq.store(even, release) [S2]
 *   reader: s1 = seq.load(acquire) [S2]; odd -> retry; entry loads (relaxed);
 *           fence(acquire) [S1]; seq.load(relaxed) == s1 -> accept the copy
 * [S1]: a copy that read any entry store of a write also sees that write's odd mark in
 * its second seq load (fence-fence synchronisation), so it is refused. [S2]: a copy that
 * started from the even value of write k sees every entry of write k.
 *
 * Scenario: one writer publishes snapshot 1 then snapshot 2 (every word of snapshot v
 * holds v: the table size, the count and an entry's two words); one reader makes up to
 * two attempts. An accepted copy must be one snapshot, whole: every word equal to
 * s1 / 2 (0: the initial empty snapshot). Anything else is a torn or mixed snapshot.
 *
 * Mutants (each must be rejected): NO_S1_WRITER_FENCE NO_S1_READER_FENCE
 *   S2_WRITER_RELAXED S2_READER_RELAXED NO_ODD_CHECK NO_SEQ_RECHECK
 */
#include <assert.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#ifdef MUTANT_S2_WRITER_RELAXED
#define ORD_S2_WRITER memory_order_relaxed
#else
#define ORD_S2_WRITER memory_order_release
#endif
#ifdef MUTANT_S2_READER_RELAXED
#define ORD_S2_READER memory_order_relaxed
#else
#define ORD_S2_READER memory_order_acquire
#endif

#define WORDS 4 /* table_size, count, entry word 0, entry word 1 */
#define WRITES 2
#define ATTEMPTS 2

atomic_uint_fast64_t seq = 0;
atomic_uint_fast64_t word[WORDS]; /* zero: the initial (empty) snapshot */

void *writer(void *arg)
{
	(void)arg;
	for (uint64_t v = 1; v <= WRITES; ++v) {
		uint64_t s = atomic_load_explicit(&seq, memory_order_relaxed);
		atomic_store_explicit(&seq, s | 1, memory_order_relaxed);
#ifndef MUTANT_NO_S1_WRITER_FENCE
		atomic_thread_fence(memory_order_release); /* [S1] release side */
#endif
		for (int i = 0; i < WORDS; ++i)
			atomic_store_explicit(&word[i], v, memory_order_relaxed);
		atomic_store_explicit(&seq, (s | 1) + 1, ORD_S2_WRITER); /* [S2] release */
	}
	return NULL;
}

void *reader(void *arg)
{
	(void)arg;
	for (int attempt = 0; attempt < ATTEMPTS; ++attempt) {
		uint64_t s1 = atomic_load_explicit(&seq, ORD_S2_READER); /* [S2] acquire */
#ifndef MUTANT_NO_ODD_CHECK
		if (s1 & 1)
			continue;
#endif
		uint64_t copy[WORDS];
		for (int i = 0; i < WORDS; ++i)
			copy[i] = atomic_load_explicit(&word[i], memory_order_relaxed);
#ifndef MUTANT_NO_S1_READER_FENCE
		atomic_thread_fence(memory_order_acquire); /* [S1] acquire side */
#endif
#ifndef MUTANT_NO_SEQ_RECHECK
		if (atomic_load_explicit(&seq, memory_order_relaxed) != s1)
			continue;
#endif
		/* Accepted: the copy must be snapshot s1 / 2, whole. */
		for (int i = 0; i < WORDS; ++i)
			assert(copy[i] == s1 / 2 && "accepted a torn or mixed FDB snapshot");
		return NULL;
	}
	return NULL;
}

int main(void)
{
	pthread_t w, r;
	pthread_create(&w, NULL, writer, NULL);
	pthread_create(&r, NULL, reader, NULL);
	pthread_join(w, NULL);
	pthread_join(r, NULL);
	return 0;
}
