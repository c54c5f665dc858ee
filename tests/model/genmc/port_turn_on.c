/*
 * GenMC model of a port turned on while a peer's pass runs (vswitch/control/daemon.cpp:
 * Daemon::publish_disabled; vswitch/dataplane/endpoint.cpp: EndpointLoop::poll_once,
 * drain_from_disabled), mirroring the code's memory orders label by label:
 *   vswitchd: for the peer Q's slice, then for the port P's own slice (last):
 *             mask.store(0, release) [R-OFF]; fence_seq.store(+1, release) [R-FENCE]
 *   P (fresh): m = mask_P.load(acquire) [R-OFF]; clear -> it reads its frontend: record
 *             bytes (relaxed), head.store(release) [R1]
 *   Q (a pass that began before the change): f0 = fence_seq_Q.load(acquire) [R-FENCE] at
 *             the pass start (unchanged: P still believed off); h = head.load(acquire)
 *             [A1]; a record from a port believed off: f1 = fence_seq_Q.load(acquire);
 *             f1 == f0 -> dropped as port_disabled; else left for the next pass.
 * The property: Q never drops a record of P's new run. P writes one only after it saw
 * its own mask clear, which vswitchd stores after Q's mask and count; the release/acquire
 * chain (vswitchd -> P -> the channel's head -> Q) makes Q's second look see the count.
 * Q's record, if it takes one, must be whole (the record bytes before the head).
 *
 * Mutants (each must be rejected):
 *   OWN_SLICE_FIRST   vswitchd tells P's slice before Q's (the order publish_disabled avoids)
 *   NO_SECOND_LOOK    Q drops a record from a port it believes off without looking again
 *   P_ACQ_RELAXED     P's load of its own mask is relaxed
 *   R1_RELAXED        P's head store is relaxed
 *   A1_RELAXED        Q's head load is relaxed
 */
#include <assert.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#ifdef MUTANT_P_ACQ_RELAXED
#define ORD_P_MASK memory_order_relaxed
#else
#define ORD_P_MASK memory_order_acquire
#endif
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

/* Each slice: bit 0 of the mask is P (set: off). */
atomic_uint_fast64_t mask_q = 1, fence_q = 0;
atomic_uint_fast64_t mask_p = 1, fence_p = 0;
/* The channel P -> Q: one record's bytes, then the head. */
atomic_uint_fast64_t record = 0, head = 0;

static void tell(atomic_uint_fast64_t *mask, atomic_uint_fast64_t *fence)
{
	atomic_store_explicit(mask, 0, memory_order_release); /* [R-OFF] */
	uint64_t f = atomic_load_explicit(fence, memory_order_relaxed);
	atomic_store_explicit(fence, f + 1, memory_order_release); /* [R-FENCE] */
}

void *vswitchd(void *arg)
{
	(void)arg;
#ifdef MUTANT_OWN_SLICE_FIRST
	tell(&mask_p, &fence_p);
	tell(&mask_q, &fence_q);
#else
	tell(&mask_q, &fence_q); /* every peer first */
	tell(&mask_p, &fence_p); /* the port's own slice last */
#endif
	return NULL;
}

void *port(void *arg)
{
	(void)arg;
	if (atomic_load_explicit(&mask_p, ORD_P_MASK) & 1)
		return NULL; /* not announced yet: its frontend is not read this pass */
	atomic_store_explicit(&record, 42, memory_order_relaxed); /* the new run's first frame */
	atomic_store_explicit(&head, 1, ORD_R1);                  /* [R1] */
	return NULL;
}

void *peer(void *arg)
{
	(void)arg;
	/* The pass start: the count as the pass saw it; a pass that sees it moved takes the
	 * mask first (follow_peers) and then P is on: only the pass that saw it unchanged,
	 * with P believed off, is the case under test. */
	uint64_t f0 = atomic_load_explicit(&fence_q, memory_order_acquire); /* [R-FENCE] */
	if (f0 != 0)
		return NULL;
	if (atomic_load_explicit(&head, ORD_A1) == 0) /* [A1] */
		return NULL;
	uint64_t bytes = atomic_load_explicit(&record, memory_order_relaxed);
#ifndef MUTANT_NO_SECOND_LOOK
	uint64_t f1 = atomic_load_explicit(&fence_q, memory_order_acquire); /* drain_from_disabled */
	if (f1 != f0)
		return NULL; /* left for the next pass, which takes the change first */
#endif
	(void)bytes;
	assert(0 && "dropped the new run's first frame as port_disabled");
	return NULL;
}

/* A pass that takes the record once it knows P is on: the record must be whole. */
void *peer_next_pass(void *arg)
{
	(void)arg;
	if (atomic_load_explicit(&fence_q, memory_order_acquire) == 0) /* [R-FENCE] */
		return NULL;
	if (atomic_load_explicit(&mask_q, memory_order_acquire) & 1) /* [R-OFF] */
		return NULL;
	if (atomic_load_explicit(&head, ORD_A1) == 0) /* [A1] */
		return NULL;
	assert(atomic_load_explicit(&record, memory_order_relaxed) == 42 && "took a record before its bytes");
	return NULL;
}

int main(void)
{
	pthread_t d, p, q, q2;
	pthread_create(&d, NULL, vswitchd, NULL);
	pthread_create(&p, NULL, port, NULL);
	pthread_create(&q, NULL, peer, NULL);
	pthread_create(&q2, NULL, peer_next_pass, NULL);
	pthread_join(d, NULL);
	pthread_join(p, NULL);
	pthread_join(q, NULL);
	pthread_join(q2, NULL);
	return 0;
}
