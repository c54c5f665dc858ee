/*
 * The sleep handshake of shm/frame_ring.cpp, both directions, under x86-TSO.
 *
 * Each process's stores go through a FIFO store buffer (channel sb_p / sb_c) that a
 * flusher drains into memory at arbitrary times; loads of the other side's variables read
 * memory. So a load can pass an earlier store: the store-buffering (Dekker) outcome that
 * loses wakeups. A full fence waits until the own buffer is empty; a locked RMW (the
 * waker's exchange) does too, and acts on memory atomically.
 *
 * Data-available:  producer [R1] head, [F1], read consumer_waiting, ring the consumer.
 *                  consumer arms consumer_waiting, [F2], re-checks head, then sleeps.
 * Space-available: consumer [R2] tail, [F4], read producer_wants, ring the producer.
 *                  producer arms producer_wants, [F3], re-checks tail, then sleeps.
 *
 * A lost wakeup leaves a process blocked on its doorbell forever while the other has
 * finished: spin reports an invalid end state. Compile-time switches remove one fence or
 * one re-check each; tests/model/check.sh expects the correct model to pass and every
 * mutation to fail.
 */

#ifndef N
#define N 3          /* records to hand over */
#endif
#ifndef CAP
#define CAP 1        /* ring capacity in records: 1 forces the producer to wait for space */
#endif

#define HEAD 0
#define TAIL 1
#define WAITING 2    /* consumer_waiting */
#define WANTS 3      /* producer_wants (records needed; 1 here) */

byte mem[4];
chan sb_p = [4] of { byte, byte };   /* producer's store buffer: (variable, value) */
chan sb_c = [4] of { byte, byte };   /* consumer's store buffer */
bool cbell = 0;                      /* consumer's eventfd (non-zero = signalled) */
bool pbell = 0;                      /* producer's eventfd */
byte delivered = 0;

proctype flusher(chan sb) {
  byte var, val;
end:
  do
  :: atomic { sb?var,val -> mem[var] = val }   /* one step: a fence sees it done or pending */
  od
}

proctype producer() {
  byte head = 0;
  byte sent = 0;
  do
  :: sent == N -> break
  :: else ->
     /* reserve_or_arm: try, arm, fence, re-check, sleep */
     if
     :: (head - mem[TAIL] < CAP) -> skip
     :: else ->
        sb_p!WANTS,1;                      /* producer_wants = 1 */
#ifndef NO_SPACE_PRODUCER_FENCE
        empty(sb_p);                       /* [F3] */
#endif
#ifndef NO_SPACE_RECHECK
        if
        :: (head - mem[TAIL] < CAP) -> sb_p!WANTS,0; goto produce   /* disarm, go on */
        :: else -> skip
        fi;
#endif
        atomic { pbell -> pbell = 0 };     /* block on the doorbell */
        goto retry
     fi;
produce:
     head++;
     sb_p!HEAD,head;                       /* [R1] publish */
     sent++;
#ifndef NO_PRODUCER_FENCE
     empty(sb_p);                          /* [F1] */
#endif
     if
     :: mem[WAITING] == 1 ->
        /* exchange(0): locked RMW, waits for the own buffer, rings only if it took a 1 */
        atomic { empty(sb_p) -> if :: mem[WAITING] == 1 -> mem[WAITING] = 0; cbell = 1 :: else -> skip fi }
     :: else -> skip
     fi;
retry: skip
  od
}

proctype consumer() {
  byte tail = 0;
  do
  :: delivered == N -> break
  :: else ->
     if
     :: mem[HEAD] != tail ->               /* [A1] a record: consume and release */
        tail++;
        delivered++;
        sb_c!TAIL,tail;                    /* [R2] */
#ifndef NO_SPACE_CONSUMER_FENCE
        empty(sb_c);                       /* [F4] */
#endif
        if
        :: mem[WANTS] == 1 ->
           atomic { empty(sb_c) -> if :: mem[WANTS] == 1 -> mem[WANTS] = 0; pbell = 1 :: else -> skip fi }
        :: else -> skip
        fi
     :: else ->                            /* peek_or_arm on an empty ring */
        sb_c!WAITING,1;
#ifndef NO_CONSUMER_FENCE
        empty(sb_c);                       /* [F2] */
#endif
#ifndef NO_RECHECK
        if
        :: mem[HEAD] != tail -> sb_c!WAITING,0; goto again
        :: else -> skip
        fi;
#endif
        atomic { cbell -> cbell = 0 };     /* block on the doorbell */
        sb_c!WAITING,0                     /* disarm after waking */
     fi;
again: skip
  od
}

init {
  atomic {
    run flusher(sb_p);
    run flusher(sb_c);
    run producer();
    run consumer()
  }
}
