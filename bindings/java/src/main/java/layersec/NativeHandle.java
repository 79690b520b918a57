package layersec;

import java.lang.ref.Cleaner;
import java.util.function.LongConsumer;

/**
 * Owns one native handle of liblayersec: frees it exactly once, never while a call uses it.
 *
 * <p>{@link #close()} frees the handle at once, or — when other threads are in a call with it
 * right now — as the last of those calls returns; a {@link Cleaner} frees it if the object
 * becomes unreachable without being closed (a safety net: close handles, the memory behind
 * them is not seen by the Java heap's accounting). Using a closed handle throws
 * {@link ClosedException} and never reaches the library. Closing twice does nothing.
 */
public abstract class NativeHandle implements AutoCloseable {
    private static final Cleaner CLEANER = Cleaner.create();

    /**
     * The pointer and its users. Referenced by the Cleaner's action, so it must not refer back
     * to the handle object (else the handle would never become unreachable).
     */
    static final class State implements Runnable {
        private final LongConsumer free;
        private long ptr;
        private int users;
        private boolean closing;

        State(long ptr, LongConsumer free) {
            this.ptr = ptr;
            this.free = free;
        }

        synchronized long acquire(String what) {
            if (ptr == 0 || closing) {
                throw new ClosedException(what);
            }
            users++;
            return ptr;
        }

        void release() {
            long doomed = 0;
            synchronized (this) {
                users--;
                if (users == 0 && closing) {
                    doomed = ptr;
                    ptr = 0;
                    closing = false;
                }
            }
            if (doomed != 0) {
                free.accept(doomed);
            }
        }

        synchronized boolean isClosed() {
            return ptr == 0 || closing;
        }

        /** close(), and the Cleaner's action. */
        @Override
        public void run() {
            long doomed;
            synchronized (this) {
                if (ptr == 0 || closing) {
                    return;
                }
                if (users > 0) {
                    closing = true;
                    return;
                }
                doomed = ptr;
                ptr = 0;
            }
            free.accept(doomed);
        }
    }

    private final State state;
    private final Cleaner.Cleanable cleanable;

    NativeHandle(long ptr, LongConsumer free) {
        if (ptr == 0) {
            throw new IllegalStateException("liblayersec returned a NULL handle");
        }
        this.state = new State(ptr, free);
        this.cleanable = CLEANER.register(this, state);
    }

    /**
     * Borrows the pointer for one native call; pair with {@link #release()} in a finally block.
     * While borrowed, close() only marks the handle, and the last release frees it (so the
     * Cleaner is harmless too, even if the JIT deems this object unreachable during the call).
     */
    final long acquire() {
        return state.acquire(getClass().getSimpleName());
    }

    final void release() {
        state.release();
    }

    /** A native call with a borrowed pointer. */
    @FunctionalInterface
    interface NativeCall<T> {
        T call(long ptr) throws LayerSecException;
    }

    /** Runs {@code call} with the pointer borrowed ({@link #acquire()} … {@link #release()}). */
    final <T> T use(NativeCall<T> call) throws LayerSecException {
        long p = acquire();
        try {
            return call.call(p);
        } finally {
            release();
        }
    }

    /** Whether {@link #close()} was called (the native object may still be in use by a call). */
    public final boolean isClosed() {
        return state.isClosed();
    }

    /** Frees the native object (at once, or when the calls using it right now return). */
    @Override
    public final void close() {
        cleanable.clean();
    }
}
