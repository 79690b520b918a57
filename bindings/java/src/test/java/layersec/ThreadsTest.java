package layersec;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.Callable;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import org.junit.jupiter.api.Test;

/**
 * Identity, Certificate, a filled CertStore and Opened are documented thread-safe: 8 threads
 * share the same ones.
 */
class ThreadsTest {
    static final int THREADS = 8;

    @Test
    void eightThreadsSealAndOpenWithSharedHandles() throws Exception {
        try (Fixtures f = new Fixtures()) {
            ExecutorService pool = Executors.newFixedThreadPool(THREADS);
            CountDownLatch start = new CountDownLatch(1);
            List<Future<Integer>> results = new ArrayList<>();
            for (int t = 0; t < THREADS; t++) {
                final int id = t;
                results.add(pool.submit(() -> {
                    start.await();
                    int n = 0;
                    for (int i = 0; i < 25; i++) {
                        byte[] doc = Fixtures.doc("thread " + id + " doc " + i);
                        byte[] sealed = LayerSec.seal(doc, f.alice, List.of(f.bobCert),
                                new SealOptions().filename("t" + id + ".txt"));
                        try (Opened o = LayerSec.open(sealed, f.bob,
                                new OpenOptions().sender(f.aliceCert))) {
                            assertArrayEquals(doc, o.document());
                            assertEquals("t" + id + ".txt", o.filename().orElseThrow());
                        }
                        // An error on this thread carries this thread's message.
                        try {
                            LayerSec.open(sealed, f.alice, new OpenOptions().sender(f.aliceCert));
                        } catch (NotARecipientException e) {
                            n++;
                        }
                    }
                    return n;
                }));
            }
            start.countDown();
            pool.shutdown();
            assertTrue(pool.awaitTermination(120, TimeUnit.SECONDS));
            for (Future<Integer> r : results) {
                assertEquals(25, r.get());
            }
        }
    }

    @Test
    void closingWhileEightThreadsUseTheHandleIsSafe() throws Exception {
        try (Fixtures f = new Fixtures()) {
            ExecutorService pool = Executors.newFixedThreadPool(THREADS);
            AtomicInteger sealed = new AtomicInteger();
            CountDownLatch running = new CountDownLatch(THREADS);
            List<Future<String>> results = new ArrayList<>();
            for (int t = 0; t < THREADS; t++) {
                Callable<String> task = () -> {
                    running.countDown();
                    try {
                        for (int i = 0; i < 10_000; i++) {
                            LayerSec.seal(Fixtures.doc("d"), f.alice, List.of(f.bobCert));
                            sealed.incrementAndGet();
                        }
                        return "never closed";
                    } catch (ClosedException e) {
                        return "closed";
                    }
                };
                results.add(pool.submit(task));
            }
            running.await();
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(60);
            while (sealed.get() < THREADS && System.nanoTime() < deadline) {
                Thread.onSpinWait();
            }
            assertTrue(sealed.get() >= THREADS, "the threads did not get going");
            f.alice.close(); // freed when the calls in flight return
            pool.shutdown();
            assertTrue(pool.awaitTermination(120, TimeUnit.SECONDS));
            for (Future<String> r : results) {
                assertEquals("closed", r.get());
            }
        }
    }

    @Test
    void eightThreadsOpenWithOneStoreAndShareOneOpened() throws Exception {
        try (Fixtures f = new Fixtures(); CertStore partners = new CertStore()) {
            partners.addPartner(f.aliceCert, "alice");
            byte[] sealed = LayerSec.seal(Fixtures.doc("shared"), f.alice, List.of(f.bobCert));
            Opened shared = LayerSec.open(sealed, f.bob, new OpenOptions().partners(partners));
            ExecutorService pool = Executors.newFixedThreadPool(THREADS);
            CountDownLatch start = new CountDownLatch(1);
            List<Future<Certificate>> results = new ArrayList<>();
            for (int t = 0; t < THREADS; t++) {
                results.add(pool.submit(() -> {
                    start.await();
                    for (int i = 0; i < 25; i++) {
                        try (Opened o = LayerSec.open(sealed, f.bob,
                                new OpenOptions().partners(partners))) {
                            assertEquals("CN=alice", o.signer().subject());
                        }
                    }
                    return shared.signer(); // made once, by whichever thread comes first
                }));
            }
            start.countDown();
            pool.shutdown();
            assertTrue(pool.awaitTermination(120, TimeUnit.SECONDS));
            Certificate first = results.get(0).get();
            for (Future<Certificate> r : results) {
                assertSame(first, r.get(), "one signer copy per Opened");
            }
            shared.close();
            assertTrue(first.isClosed());
        }
    }
}
