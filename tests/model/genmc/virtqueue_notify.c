/*
 * GenMC model of split-virtqueue notification (virtio 1.x, 2.7.7 "Used Buffer Notification
 * Suppression" and 2.7.10 "Available Buffer Notification Suppression"): the device side
 * mirrors endpoints/virtio/split_queue.hpp/.cpp label by label, the driver side follows
 * the spec's driver requirements as Linux's virtio_ring implements them.
 *
 * Device (the code):
 *   [VA]  avail->idx load-acquire before reading ring entries and descriptors;
 *   [VR]  used->idx store-release after the used element and the bytes written into the buffer;
 *   [VF1] full fence after [VR], before reading used_event (EVENT_IDX) / avail->flags;
 *   [VF2] full fence after publishing avail_event (or clearing NO_NOTIFY), before
 *         re-reading avail->idx (enable_notification()).
 * Driver (the spec, 2.7.13 "Supplying Buffers to The Device" and 2.7.14 "Receiving Used
 * Buffers From The Device"):
 *   write the descriptor and the avail ring entry, write barrier, avail->idx (release);
 *   full barrier (2.7.13.4: "the driver MUST ... before checking for notification
 *   suppression"), read avail_event / used->flags, kick if asked;
 *   re-enable interrupts: write used_event / clear NO_INTERRUPT, full barrier, re-read
 *   used->idx (read barrier before the used element); unchanged -> wait for the interrupt.
 *
 * Scenario (one chain each way, after some history so that the stale suppression values
 * do not ask for a notification): avail->idx = used->idx = 1, the device consumed and
 * returned chain 0 and signalled it; avail_event = used_event = 0 (stale) in EVENT_IDX
 * mode, NO_NOTIFY / NO_INTERRUPT set in flag mode.
 *   device: about to sleep: enable_notification() ([VF2] re-check); a chain is there ->
 *           pop() it ([VA]), write into its buffer, add_used, publish_used() [VR],
 *           needs_notification() [VF1] -> interrupt. Otherwise it sleeps on the kick.
 *   driver: adds chain 1 and kicks if asked; re-enables interrupts; used->idx moved ->
 *           reads the used element and the buffer, otherwise it sleeps on the interrupt.
 * After both threads end: the device asleep without a kick = lost kick; the driver asleep
 * without an interrupt on a used element the device published = lost interrupt; the
 * device read the chain's descriptor as written ([VA]); the driver read the bytes the
 * device wrote ([VR]).
 *
 * Modes: default EVENT_IDX; -DFLAG_MODE for VRING_USED_F_NO_NOTIFY / VRING_AVAIL_F_NO_INTERRUPT.
 * Mutants of the device (each must be rejected): NO_VF1 NO_VF2 NO_DEVICE_RECHECK
 *   VR_RELAXED VA_RELAXED. Mutants of the driver (to show the model depends on the
 *   driver's barriers too): NO_DRIVER_KICK_MB NO_DRIVER_CB_MB NO_DRIVER_RECHECK.
 */
#include <assert.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#ifdef MUTANT_VR_RELAXED
#define ORD_VR memory_order_relaxed
#else
#define ORD_VR memory_order_release
#endif
#ifdef MUTANT_VA_RELAXED
#define ORD_VA memory_order_relaxed
#else
#define ORD_VA memory_order_acquire
#endif
#define FULL_FENCE() atomic_thread_fence(memory_order_seq_cst) /* sys::full_fence() / virtio_mb() */

#define AVAIL_F_NO_INTERRUPT 1
#define USED_F_NO_NOTIFY 1
#define DESC_ADDR 0x1000  /* what the driver puts in chain 1's descriptor */
#define DEVICE_BYTES 0x5a /* what the device writes into chain 1's buffer */

/* Guest memory: the rings (16-bit words) and the chain's descriptor and buffer. */
atomic_ushort avail_idx = 1;
atomic_ushort avail_ring1 = 0xffff; /* avail->ring[1]: the head of chain 1 */
atomic_ushort used_idx = 1;
atomic_uint used_elem1 = 0xffffffff; /* used->ring[1].id */
#ifdef FLAG_MODE
atomic_ushort used_flags = USED_F_NO_NOTIFY;      /* device: busy, do not kick */
atomic_ushort avail_flags = AVAIL_F_NO_INTERRUPT; /* driver: polling, no interrupt */
#else
atomic_ushort avail_event = 0; /* used->ring[size]: stale, does not ask for a kick */
atomic_ushort used_event = 0;  /* avail->ring[size]: stale, does not ask for an interrupt */
#endif
atomic_ulong desc1_addr = 0;
atomic_int buffer1 = 0;

/* Outcomes, read after both threads are joined. */
atomic_int kicked = 0, interrupted = 0, device_slept = 0, driver_slept = 0;
atomic_int device_published = 0;
atomic_ulong device_saw_addr = 0;
atomic_int driver_saw_bytes = -1;

/* vring_need_event (2.7.7.2 / 2.7.10.2): notify when new_idx passed event_idx since old. */
static int need_event(uint16_t event_idx, uint16_t new_idx, uint16_t old)
{
	return (uint16_t)(new_idx - event_idx - 1) < (uint16_t)(new_idx - old);
}

/* ---- device (SplitQueue) ---- */

static uint16_t next_avail = 1, cached_avail_idx = 1, next_used = 1, published_used = 1;
static uint16_t signalled_used = 1;
static int signalled_used_valid = 1;

static uint16_t load_avail_idx(void)
{
	return atomic_load_explicit(&avail_idx, ORD_VA); /* [VA] */
}

/* enable_notification(): publish avail_event / clear NO_NOTIFY, [VF2], re-check avail->idx. */
static int enable_notification(void)
{
#ifdef FLAG_MODE
	atomic_store_explicit(&used_flags, 0, memory_order_relaxed);
#else
	atomic_store_explicit(&avail_event, next_avail, memory_order_relaxed);
#endif
#ifndef MUTANT_NO_VF2
	FULL_FENCE(); /* [VF2] */
#endif
#ifdef MUTANT_NO_DEVICE_RECHECK
	return 0;
#else
	cached_avail_idx = load_avail_idx();
	return cached_avail_idx != next_avail;
#endif
}

/* publish_used() [VR], then needs_notification() [VF1]. */
static void publish_used(void)
{
	atomic_store_explicit(&used_idx, next_used, ORD_VR); /* [VR] */
	published_used = next_used;
	atomic_store_explicit(&device_published, 1, memory_order_relaxed);
}

static int needs_notification(void)
{
#ifndef MUTANT_NO_VF1
	FULL_FENCE(); /* [VF1] */
#endif
#ifdef FLAG_MODE
	return (atomic_load_explicit(&avail_flags, memory_order_relaxed) & AVAIL_F_NO_INTERRUPT) == 0;
#else
	uint16_t ev = atomic_load_explicit(&used_event, memory_order_relaxed); /* ordered by [VF1] */
	int notify = !signalled_used_valid || need_event(ev, published_used, signalled_used);
	signalled_used = published_used;
	signalled_used_valid = 1;
	return notify;
#endif
}

void *device(void *arg)
{
	(void)arg;
	if (!enable_notification()) {
		atomic_store_explicit(&device_slept, 1, memory_order_relaxed); /* sleeps on the kick eventfd */
		return NULL;
	}
	/* pop(): the head from the avail ring, then its descriptor, both ordered by [VA]. */
	uint16_t head = atomic_load_explicit(&avail_ring1, memory_order_relaxed);
	(void)head;
	atomic_store_explicit(&device_saw_addr, atomic_load_explicit(&desc1_addr, memory_order_relaxed),
			      memory_order_relaxed);
	next_avail++;
	/* The frame goes into the buffer; add_used(head, len) stages the used element. */
	atomic_store_explicit(&buffer1, DEVICE_BYTES, memory_order_relaxed);
	atomic_store_explicit(&used_elem1, 1, memory_order_relaxed);
	next_used++;
	publish_used();
	if (needs_notification())
		atomic_store_explicit(&interrupted, 1, memory_order_relaxed); /* write(call_fd) */
	return NULL;
}

/* ---- driver (the guest's virtio_ring) ---- */

void *driver(void *arg)
{
	(void)arg;
	uint16_t old = 1, new_idx = 2, last_used = 1;
	/* Add chain 1: descriptor, avail ring entry, write barrier, avail->idx. */
	atomic_store_explicit(&desc1_addr, DESC_ADDR, memory_order_relaxed);
	atomic_store_explicit(&avail_ring1, 1, memory_order_relaxed);
	atomic_store_explicit(&avail_idx, new_idx, memory_order_release); /* virtio_wmb(); idx */
#ifndef MUTANT_NO_DRIVER_KICK_MB
	FULL_FENCE(); /* virtio_mb() before checking notification suppression */
#endif
#ifdef FLAG_MODE
	int kick = (atomic_load_explicit(&used_flags, memory_order_relaxed) & USED_F_NO_NOTIFY) == 0;
#else
	int kick = need_event(atomic_load_explicit(&avail_event, memory_order_relaxed), new_idx, old);
#endif
	(void)old;
	if (kick)
		atomic_store_explicit(&kicked, 1, memory_order_relaxed);

	/* Re-enable interrupts (virtqueue_enable_cb): ask, full barrier, re-check used->idx. */
#ifdef FLAG_MODE
	atomic_store_explicit(&avail_flags, 0, memory_order_relaxed);
#else
	atomic_store_explicit(&used_event, last_used, memory_order_relaxed);
#endif
#ifndef MUTANT_NO_DRIVER_CB_MB
	FULL_FENCE(); /* virtio_mb() in virtqueue_poll */
#endif
#ifndef MUTANT_NO_DRIVER_RECHECK
	/* used->idx then virtio_rmb() before the used element: an acquire load. */
	if (atomic_load_explicit(&used_idx, memory_order_acquire) != last_used) {
		(void)atomic_load_explicit(&used_elem1, memory_order_relaxed);
		atomic_store_explicit(&driver_saw_bytes, atomic_load_explicit(&buffer1, memory_order_relaxed),
				      memory_order_relaxed);
		return NULL;
	}
#endif
	atomic_store_explicit(&driver_slept, 1, memory_order_relaxed); /* waits for the interrupt */
	return NULL;
}

int main(void)
{
	pthread_t dev, drv;
	pthread_create(&dev, NULL, device, NULL);
	pthread_create(&drv, NULL, driver, NULL);
	pthread_join(dev, NULL);
	pthread_join(drv, NULL);

	assert(!(atomic_load_explicit(&device_slept, memory_order_relaxed) &&
		 !atomic_load_explicit(&kicked, memory_order_relaxed)) &&
	       "lost kick: device sleeps with chain 1 available, driver did not kick");
	assert(!(atomic_load_explicit(&driver_slept, memory_order_relaxed) &&
		 atomic_load_explicit(&device_published, memory_order_relaxed) &&
		 !atomic_load_explicit(&interrupted, memory_order_relaxed)) &&
	       "lost interrupt: driver waits, chain 1 is used, no interrupt");
	unsigned long addr = atomic_load_explicit(&device_saw_addr, memory_order_relaxed);
	assert((addr == 0 && !atomic_load_explicit(&device_published, memory_order_relaxed)) ||
	       addr == DESC_ADDR && "device read chain 1's descriptor before the driver's write ([VA])");
	int bytes = atomic_load_explicit(&driver_saw_bytes, memory_order_relaxed);
	assert((bytes == -1 || bytes == DEVICE_BYTES) && "driver read the buffer before the device's bytes ([VR])");
	return 0;
}
