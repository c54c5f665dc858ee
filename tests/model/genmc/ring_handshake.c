/*
 * GenMC model of the SPSC frame ring's two sleep handshakes (shm/frame_ring.hpp/.cpp),
 * mirroring the code's memory orders label by label:
 *   [R1] producer: record bytes, then head.store(release)   -> [A1] consumer head.load(acquire)
 *   [R2] consumer: copy-out done, then tail.store(release)  -> [A2] producer tail.load(acquire)
 *   [F1] producer after [R1], before reading consumer_waiting  <-> [F2] consumer after
 *        setting consumer_waiting, before re-reading head (data-available handshake)
 *   [F3] producer after setting producer_wants, before re-reading tail  <-> [F4] consumer
 *        after [R2], before reading producer_wants (free-send handshake)
 *
 * The ring holds one record (capacity = one record, so a slot is reused: this is what
 * makes [R2]/[A2] matter). At the start record A sits in the ring (head = 1, tail = 0).
 *   producer: reserve_or_arm() for record B: [A2] tail; full -> arm producer_wants, [F3],
 *             re-check tail [A2]; still full -> sleeps. Otherwise writes B into the freed
 *             slot and publish(): [R1] head, [F1], consumer_waiting -> exchange -> ring.
 *   consumer: peek() [A1] head, copies A out; the next peek finds the ring empty and
 *             release()s: [R2] tail, [F4], producer_wants >= free? -> exchange -> ring; then
 *             peek_or_arm(): arm consumer_waiting, [F2], re-check head [A1]; still empty ->
 *             sleeps. Otherwise copies B out.
 * After both threads end (nothing more will happen in this bounded run):
 *   - a sleeper whose condition became true and whose doorbell was never rung is a lost
 *     wakeup (the doorbell is an eventfd: a ring before the sleep still wakes it);
 *   - every record copied out holds the bytes the producer wrote for it (the copy is
 *     recorded and checked at the end so that no branch on it orders anything).
 * Indices are record counts, not bytes: a record never wraps (pads are not modelled;
 * reserve_or_arm's loop for a changed shortfall is then never taken).
 *
 * Mutants (compile with -DMUTANT_x; each must be rejected):
 *   NO_F1 NO_F2 NO_F3 NO_F4   the fence removed
 *   NO_RECHECK                peek_or_arm sleeps after arming without re-reading head
 *   NO_SPACE_RECHECK          reserve_or_arm sleeps after arming without re-reading tail
 *   R1_RELAXED R2_RELAXED     the release store weakened to relaxed
 *   A1_RELAXED A2_RELAXED     the acquire load weakened to relaxed
 */
#include <assert.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#ifdef MUTANT_R1_RELAXED
#define ORD_R1 memory_order_relaxed
#else
#define ORD_R1 memory_order_release
#endif
#ifdef MUTANT_A1_RELAXED
#define ORD_A1 memory_order_relaxed
#else
#define ORD_A1 memory_order_acquire
#endif
#ifdef MUTANT_R2_RELAXED
#define ORD_R2 memory_order_relaxed
#else
#define ORD_R2 memory_order_release
#endif
#ifdef MUTANT_A2_RELAXED
#define ORD_A2 memory_order_relaxed
#else
#define ORD_A2 memory_order_acquire
#endif

/* sys::full_fence() is std::atomic_thread_fence(std::memory_order_seq_cst). */
#define FULL_FENCE() atomic_thread_fence(memory_order_seq_cst)

#define CAPACITY 1u   /* records */
#define RECORD_A 0xa1 /* payload bytes of the record already in the ring */
#define RECORD_B 0xb2 /* payload bytes of the record the producer adds */

/* Shared ring area. */
atomic_uint_fast64_t head = 1;      /* written by the producer only */
atomic_uint_fast64_t tail = 0;      /* written by the consumer only */
atomic_uint consumer_waiting = 0;   /* set by the consumer before it sleeps */
atomic_uint_fast64_t producer_wants = 0; /* records the producer waits for */
atomic_int slot = RECORD_A;         /* the record bytes (memcpy in the code) */

/* Doorbells and outcomes, read after both threads are joined. */
atomic_int consumer_rung = 0, producer_rung = 0;
atomic_int consumer_slept = 0, producer_slept = 0, producer_published = 0;
atomic_int copied_a = -1, copied_b = -1;

/* ---- producer (FrameProducer) ---- */

static uint64_t p_head = 1, p_cached_tail = 0;

/* has_space(): [A2] the consumer has finished reading every record below tail. */
static int has_space(void)
{
	if (CAPACITY - (p_head - p_cached_tail) >= 1)
		return 1;
	p_cached_tail = atomic_load_explicit(&tail, ORD_A2); /* [A2] pairs with [R2] */
	return CAPACITY - (p_head - p_cached_tail) >= 1;
}

/* publish(): [R1], [F1], consumer_waiting load + exchange. */
static void publish(void)
{
	atomic_store_explicit(&head, p_head, ORD_R1); /* [R1] pairs with [A1] */
	atomic_store_explicit(&producer_published, 1, memory_order_relaxed);
#ifndef MUTANT_NO_F1
	FULL_FENCE(); /* [F1] orders [R1] before the load of consumer_waiting; pairs with [F2] */
#endif
	if (atomic_load_explicit(&consumer_waiting, memory_order_relaxed) != 0 &&
	    atomic_exchange_explicit(&consumer_waiting, 0, memory_order_relaxed) != 0)
		atomic_store_explicit(&consumer_rung, 1, memory_order_relaxed);
}

void *producer(void *arg)
{
	(void)arg;
	/* reserve_or_arm(): try_reserve() first. */
	if (!has_space()) {
		/* Arm: producer_wants store, ordered by [F3]. */
		atomic_store_explicit(&producer_wants, 1, memory_order_relaxed);
#ifndef MUTANT_NO_F3
		FULL_FENCE(); /* [F3] orders the producer_wants store before the tail re-read; pairs with [F4] */
#endif
#ifndef MUTANT_NO_SPACE_RECHECK
		if (!has_space()) { /* re-check after [F3] */
			atomic_store_explicit(&producer_slept, 1, memory_order_relaxed);
			return NULL;
		}
#else
		atomic_store_explicit(&producer_slept, 1, memory_order_relaxed);
		return NULL;
#endif
		/* disarm(): relaxed, a stale request only causes a spurious doorbell. */
		atomic_store_explicit(&producer_wants, 0, memory_order_relaxed);
	}
	/* Reserved: write record B into the freed slot, commit, publish. */
	atomic_store_explicit(&slot, RECORD_B, memory_order_relaxed);
	p_head += 1;
	publish();
	return NULL;
}

/* ---- consumer (FrameConsumer) ---- */

static uint64_t c_tail = 0, c_released_tail = 0, c_cached_head = 0;

/* release(): [R2], [F4], producer_wants load, free-space threshold, exchange. */
static void release(void)
{
	if (c_tail == c_released_tail)
		return;
	atomic_store_explicit(&tail, c_tail, ORD_R2); /* [R2] pairs with [A2] */
	c_released_tail = c_tail;
#ifndef MUTANT_NO_F4
	FULL_FENCE(); /* [F4] orders [R2] before the load of producer_wants; pairs with [F3] */
#endif
	uint64_t wants = atomic_load_explicit(&producer_wants, memory_order_relaxed);
	if (wants == 0)
		return;
	uint64_t free_records = CAPACITY - (c_cached_head - c_tail);
	if ((free_records >= wants || c_tail == c_cached_head) &&
	    atomic_exchange_explicit(&producer_wants, 0, memory_order_relaxed) != 0)
		atomic_store_explicit(&producer_rung, 1, memory_order_relaxed);
}

/* peek(): 1 when a record is available (cached or after [A1]); 0 after release() when empty. */
static int peek(void)
{
	if (c_tail == c_cached_head) {
		c_cached_head = atomic_load_explicit(&head, ORD_A1); /* [A1] pairs with [R1] */
		if (c_tail == c_cached_head) {
			release(); /* hand back consumed records before reporting empty */
			return 0;
		}
	}
	return 1;
}

/* Copies the record at tail out (recorded, checked after the join) and consumes it. */
static void copy_out(atomic_int *into)
{
	atomic_store_explicit(into, atomic_load_explicit(&slot, memory_order_relaxed),
			      memory_order_relaxed);
	c_tail += 1;
}

void *consumer(void *arg)
{
	(void)arg;
	if (!peek())
		return NULL; /* cannot happen: A is in the ring from the start */
	copy_out(&copied_a);
	/* peek_or_arm() for the next record. */
	if (peek()) {
		copy_out(&copied_b);
		return NULL;
	}
	atomic_store_explicit(&consumer_waiting, 1, memory_order_relaxed); /* ordered by [F2] */
#ifndef MUTANT_NO_F2
	FULL_FENCE(); /* [F2] orders the consumer_waiting store before the head re-read; pairs with [F1] */
#endif
#ifndef MUTANT_NO_RECHECK
	if (peek()) {
		atomic_store_explicit(&consumer_waiting, 0, memory_order_relaxed); /* disarm() */
		copy_out(&copied_b);
		return NULL;
	}
#endif
	atomic_store_explicit(&consumer_slept, 1, memory_order_relaxed);
	return NULL;
}

int main(void)
{
	pthread_t p, c;
	pthread_create(&p, NULL, producer, NULL);
	pthread_create(&c, NULL, consumer, NULL);
	pthread_join(p, NULL);
	pthread_join(c, NULL);

	int c_slept = atomic_load_explicit(&consumer_slept, memory_order_relaxed);
	int p_slept = atomic_load_explicit(&producer_slept, memory_order_relaxed);
	int published = atomic_load_explicit(&producer_published, memory_order_relaxed);
	/* The consumer always frees A's slot, so a producer asleep without a ring is stuck. */
	assert(!(p_slept && !atomic_load_explicit(&producer_rung, memory_order_relaxed)) &&
	       "free-send lost wakeup: producer sleeps on a ring with room, nobody rang");
	assert(!(c_slept && published && !atomic_load_explicit(&consumer_rung, memory_order_relaxed)) &&
	       "data-available lost wakeup: consumer sleeps on a published record, nobody rang");
	assert(atomic_load_explicit(&copied_a, memory_order_relaxed) == RECORD_A &&
	       "record A overwritten before the consumer copied it out ([R2]/[A2])");
	int b = atomic_load_explicit(&copied_b, memory_order_relaxed);
	assert((b == -1 || b == RECORD_B) && "record B copied out before its bytes were visible ([R1]/[A1])");
	return 0;
}
