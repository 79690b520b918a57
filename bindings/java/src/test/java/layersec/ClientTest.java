package layersec;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.net.ServerSocket;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.stream.Stream;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * {@link Client} against a real Messaging Service: the {@code layersec-server} and
 * {@code layersec} binaries of the cargo target folder ({@code -Dlayersec.test.bin}, set by the
 * Makefile) — the service started on 127.0.0.1:0, each party made with {@code layersec init}
 * and registered with {@code layersec-server admin}. Skipped (with the reason) when the
 * binaries are not built ({@code cargo build -p ls-server -p ls-cli}).
 */
class ClientTest {
    private static Path bin;
    private static Path dir;
    private static Path serverConfig;
    private static Process server;
    private static String url;
    private static int counter;

    private static Path exe(String name) {
        return bin.resolve(name);
    }

    @BeforeAll
    static void startService() throws Exception {
        String b = System.getProperty("layersec.test.bin");
        bin = b == null ? null : Paths.get(b);
        Assumptions.assumeTrue(bin != null && Files.isExecutable(bin.resolve("layersec-server"))
                && Files.isExecutable(bin.resolve("layersec")),
                "layersec-server and layersec are not built in " + b
                        + " (cargo build -p ls-server -p ls-cli): the client tests need them");
        dir = Files.createTempDirectory("layersec-java-client");
        run(exe("layersec-server").toString(), "init", "--dir", dir.resolve("svc").toString(),
                "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0");
        serverConfig = dir.resolve("svc/layersec-server.toml");
        server = new ProcessBuilder(exe("layersec-server").toString(), "serve", "--config",
                serverConfig.toString())
                .redirectOutput(ProcessBuilder.Redirect.DISCARD).start();
        CompletableFuture<String> listening = new CompletableFuture<>();
        Thread drain = new Thread(() -> { // the whole log, so the service never blocks on it
            Pattern as4 = Pattern.compile("\"as4\":\"([^\"]+)\"");
            try (BufferedReader r = new BufferedReader(
                    new InputStreamReader(server.getErrorStream(), StandardCharsets.UTF_8))) {
                for (String line; (line = r.readLine()) != null; ) {
                    Matcher m = as4.matcher(line);
                    if (line.contains("\"event\":\"listening\"") && m.find()) {
                        listening.complete(m.group(1));
                    }
                }
            } catch (IOException e) {
                listening.completeExceptionally(e);
            }
            listening.completeExceptionally(new IllegalStateException("server log ended"));
        });
        drain.setDaemon(true);
        drain.start();
        url = listening.get(60, TimeUnit.SECONDS);
    }

    @AfterAll
    static void stopService() throws Exception {
        if (server != null) {
            server.destroyForcibly().waitFor();
        }
        if (dir != null) {
            try (Stream<Path> s = Files.walk(dir)) {
                s.sorted(Comparator.reverseOrder()).forEach(p -> p.toFile().delete());
            }
        }
    }

    /** Runs a command; its stdout, or a failed test with both streams. */
    private static String run(String... cmd) throws Exception {
        Process p = new ProcessBuilder(cmd).redirectErrorStream(false).start();
        CompletableFuture<byte[]> err = CompletableFuture.supplyAsync(() -> {
            try {
                return p.getErrorStream().readAllBytes();
            } catch (IOException e) {
                return new byte[0];
            }
        });
        String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
        int rc = p.waitFor();
        if (rc != 0) {
            throw new AssertionError(String.join(" ", cmd) + " exited with " + rc + ":\n" + out
                    + new String(err.get(), StandardCharsets.UTF_8));
        }
        return out;
    }

    private static String jsonField(String json, String key) {
        Matcher m = Pattern.compile("\"" + key + "\"\\s*:\\s*(\"([^\"]*)\"|(\\d+))").matcher(json);
        assertTrue(m.find(), key + " in " + json);
        return m.group(2) != null ? m.group(2) : m.group(3);
    }

    /** A party made with {@code layersec init}. */
    static final class Party {
        final String id;
        final Path folder;
        final Path config;
        final Path cert;

        Party(String id, Path folder, Path config, Path cert) {
            this.id = id;
            this.folder = folder;
            this.config = config;
            this.cert = cert;
        }

        void trust(Party other) throws IOException {
            Files.copy(other.cert, folder.resolve("partners").resolve(other.id + ".crt"));
        }
    }

    private static synchronized Party init(String name, boolean register) throws Exception {
        String id = "java-" + name + "-" + (++counter);
        Path folder = dir.resolve(id);
        String out = run(exe("layersec").toString(), "init", "--party", id, "--service", url,
                "--dir", folder.toString(), "--service-cert",
                dir.resolve("svc/identity/service.crt").toString(), "--ca-file",
                dir.resolve("svc/tls/server.crt").toString(), "--json");
        Party p = new Party(id, folder, Paths.get(jsonField(out, "config")),
                Paths.get(jsonField(out, "certificate")));
        // Retry a queued send after 1 s (not 30 s).
        String text = Files.readString(p.config).replace("initial_secs = 30", "initial_secs = 1")
                .replace("max_secs = 3600", "max_secs = 2");
        Files.writeString(p.config, text);
        if (register) {
            String admin = exe("layersec-server").toString();
            String sub = run(admin, "admin", "--config", serverConfig.toString(), "subscriber",
                    "add", "--organisation", id);
            run(admin, "admin", "--config", serverConfig.toString(), "party", "add",
                    "--subscriber", jsonField(sub, "id"), "--party", id, "--certificate",
                    p.cert.toString());
        }
        return p;
    }

    private static Party[] pair() throws Exception {
        Party a = init("sender", true);
        Party b = init("recipient", true);
        a.trust(b);
        b.trust(a);
        return new Party[] {a, b};
    }

    private static int count(Path folder) throws IOException {
        try (Stream<Path> s = Files.list(folder)) {
            return (int) s.count();
        }
    }

    @Test
    void sendAndPollRoundTrip() throws Exception {
        Party[] p = pair();
        Party a = p[0];
        Party b = p[1];
        byte[] doc = ("<Invoice id='7'>" + "x".repeat(3000) + "</Invoice>")
                .getBytes(StandardCharsets.UTF_8);
        Path order = dir.resolve("order-" + a.id + ".xml");
        Files.write(order, Fixtures.doc("<Order/>"));
        List<Received> got;
        try (Client sender = Client.fromConfig(a.config);
                Client recipient = Client.fromConfig(b.config)) {
            String mid = sender.send(doc, "invoice.xml", b.id,
                    new Client.SendOptions().conversation("conv-1"));
            String mid2 = sender.sendFile(order, b.id, new Client.SendOptions().action("Order"));
            assertNotEquals(mid, mid2);
            assertEquals(ReceiptState.WAITING, sender.receiptState(mid));
            Receipt waiting = sender.receipts(true).stream()
                    .filter(r -> r.messageId().equals(mid)).findFirst().orElseThrow();
            assertEquals(ReceiptState.WAITING, waiting.state());
            assertTrue(waiting.receipt().isEmpty());
            assertEquals(ReceiptState.UNKNOWN, sender.receiptState("no-such-id@nowhere"));
            got = recipient.poll();
            assertEquals(List.of(), recipient.poll()); // receipted: not offered again
            assertEquals(2, got.size());
            Received first = got.stream().filter(r -> r.messageId().equals(mid)).findFirst()
                    .orElseThrow();
            Received second = got.stream().filter(r -> r.messageId().equals(mid2)).findFirst()
                    .orElseThrow();
            assertEquals("invoice.xml", first.name());
            assertEquals(order.getFileName().toString(), second.name());
            assertEquals(a.id, first.sender());
            assertEquals(a.id, second.sender());
            assertEquals("conv-1", first.conversationId());
            assertEquals(mid2, second.conversationId());
            assertEquals(doc.length, first.size());
            assertEquals(8, second.size());
            assertArrayEquals(doc, Files.readAllBytes(first.path()));
            assertEquals(b.folder.resolve("inbox").toRealPath(),
                    first.path().getParent().toRealPath());
            assertTrue(Files.isRegularFile(first.metadataPath()));
            for (Received r : got) {
                Instant now = Instant.now();
                assertTrue(Duration.between(r.receivedAt(), now).abs().toMinutes() < 5);
                assertTrue(Duration.between(r.signingTime().orElseThrow(), now).abs()
                        .toMinutes() < 5);
            }
            // The recipient's poll posted the signed receipt: the sender's poll fetches it.
            assertEquals(0, sender.poll().size());
            assertEquals(ReceiptState.PROCESSED, sender.receiptState(mid));
            assertTrue(sender.receiptsJson(false).contains(mid));
            assertFalse(sender.receiptsJson(true).contains(mid));
            // The same as typed receipts.
            List<Receipt> all = sender.receipts();
            assertEquals(2, all.size());
            Receipt r = all.stream().filter(x -> x.messageId().equals(mid)).findFirst()
                    .orElseThrow();
            assertEquals(ReceiptState.PROCESSED, r.state());
            assertEquals("invoice.xml", r.document());
            assertEquals(b.id, r.to());
            assertTrue(r.refusalClass().isEmpty());
            assertTrue(Duration.between(r.sentAt().orElseThrow(), Instant.now()).abs()
                    .toMinutes() < 5);
            Receipt.Signed signed = r.receipt().orElseThrow();
            assertEquals(b.id, signed.partner());
            assertEquals("processed", signed.disposition());
            assertTrue(signed.verified(), signed.toString());
            assertTrue(signed.error().isEmpty());
            assertEquals(Boolean.TRUE, signed.payloadMatches().orElseThrow());
            assertTrue(signed.signerSubject().orElseThrow().contains(b.id));
            assertFalse(signed.receiptMessageId().isEmpty());
            assertTrue(Files.isRegularFile(signed.receiptFile().orElseThrow()));
            assertTrue(sender.receipts(true).stream().noneMatch(x -> x.messageId().equals(mid)));
        }
        assertArrayEquals(doc, Files.readAllBytes(a.folder.resolve("sent/invoice.xml")));
    }

    @Test
    void anExceptionInThePollConsumerStopsThePollAndComesOutAfterIt() throws Exception {
        Party[] p = pair();
        try (Client sender = Client.fromConfig(p[0].config);
                Client recipient = Client.fromConfig(p[1].config)) {
            for (int i = 0; i < 3; i++) {
                sender.send(Fixtures.doc("doc " + i), "d" + i + ".txt", p[1].id);
            }
            IllegalStateException boom = new IllegalStateException("boom");
            List<Received> seen = new ArrayList<>();
            IllegalStateException e = assertThrows(IllegalStateException.class,
                    () -> recipient.poll(r -> {
                        seen.add(r);
                        // The callback may use the client: a send works, a nested poll is
                        // refused by the library (the state folder is locked).
                        StoreException locked = assertThrows(StoreException.class,
                                () -> recipient.poll());
                        assertEquals("LS_ERR_STATE_LOCKED", locked.name());
                        throw boom;
                    }));
            assertSame(boom, e);
            assertEquals(1, seen.size()); // stopped after the first document
            // That one was receipted; the other two come with the next poll.
            List<Received> rest = recipient.poll();
            assertEquals(2, rest.size());
            assertFalse(rest.stream().anyMatch(r -> r.messageId().equals(seen.get(0).messageId())));
            // An Error (not only RuntimeException) is carried out just the same.
            sender.send(Fixtures.doc("once more"), "d3.txt", p[1].id);
            assertThrows(AssertionError.class, () -> recipient.poll(r -> {
                throw new AssertionError("from the consumer");
            }));
            assertEquals(0, recipient.poll().size());
        }
    }

    private static int freePort() throws IOException {
        try (ServerSocket s = new ServerSocket(0)) {
            return s.getLocalPort();
        }
    }

    @Test
    void aSendWhileTheServiceIsDownIsQueuedAndDeliveredLater() throws Exception {
        Party[] p = pair();
        Party a = p[0];
        // The same folders (and journal), but a URL where nobody listens: the service is down.
        Path down = a.folder.resolve("layersec-down.toml");
        Files.writeString(down, Files.readString(a.config)
                .replace(url, "https://127.0.0.1:" + freePort() + "/as4"));
        String mid;
        try (Client c = Client.fromConfig(down)) {
            QueuedForRetryException q = assertThrows(QueuedForRetryException.class,
                    () -> c.send(Fixtures.doc("late"), "late.txt", p[1].id));
            mid = q.messageId();
            assertFalse(mid.isEmpty());
            assertTrue(q.getMessage().contains(mid), q.getMessage());
            assertInstanceOf(ServiceException.class, q.getCause());
            assertEquals(600, q.code());
            assertEquals("LS_ERR_CONNECT_FAILED", q.name());
            assertTrue(q.isTransient() && q.getCause().isTransient());
            assertEquals(1, count(a.folder.resolve("state/outgoing")));
            assertEquals(0, c.runDueJobs()); // still down: still queued
            ServiceException pe = assertThrows(ServiceException.class, c::poll);
            assertEquals(600, pe.code());
            assertTrue(pe.isTransient(), "a poll of a service that is down may work later");
        }
        // The service is back (the real URL): the journal delivers it with the same MessageId.
        Thread.sleep(2500); // past the back-off (initial_secs = 1, max_secs = 2)
        try (Client c = Client.fromConfig(a.config);
                Client recipient = Client.fromConfig(p[1].config)) {
            assertEquals(1, c.runDueJobs());
            assertEquals(0, count(a.folder.resolve("state/outgoing")));
            List<Received> got = recipient.poll();
            assertEquals(1, got.size());
            assertEquals(mid, got.get(0).messageId());
            assertArrayEquals(Fixtures.doc("late"), Files.readAllBytes(got.get(0).path()));
        }
    }

    @Test
    void refusedSendsAreNotQueued() throws Exception {
        Party a = init("refused", true);
        Party ghost = init("ghost", false); // never registered at the service
        a.trust(ghost);
        try (Client c = Client.fromConfig(a.config)) {
            // The service refuses a message to a party it does not know.
            ProtocolException e = assertThrows(ProtocolException.class,
                    () -> c.send(Fixtures.doc("x"), "x.txt", ghost.id));
            assertEquals(ProtocolException.class, e.getClass()); // not QueuedForRetryException
            assertEquals("LS_ERR_EBMS_ERROR", e.name());
            assertTrue(e.libraryMessage().contains(ghost.id), e.libraryMessage());
            assertFalse(e.isTransient());
            assertTrue(Files.isRegularFile(a.folder.resolve("failed/x.txt")));
            // No certificate for the partner: refused before anything is sent.
            CertificateException u = assertThrows(CertificateException.class,
                    () -> c.send(Fixtures.doc("x"), "y.txt", "nobody-knows-me"));
            assertEquals("LS_ERR_CERT_NOT_FOUND", u.name());
            assertFalse(u.isTransient());
            assertEquals(0, count(a.folder.resolve("state/outgoing")));
        }
        // The unregistered party's own send fails authentication at the service.
        ghost.trust(a);
        try (Client g = Client.fromConfig(ghost.config)) {
            ProtocolException e = assertThrows(ProtocolException.class,
                    () -> g.send(Fixtures.doc("x"), "x.txt", a.id));
            assertEquals("LS_ERR_EBMS_ERROR", e.name());
            assertFalse(e.isTransient());
            assertEquals(0, count(ghost.folder.resolve("state/outgoing")));
        }
    }

    @Test
    void configurationErrorsArgumentsAndUseAfterClose() throws Exception {
        StoreException e = assertThrows(StoreException.class,
                () -> Client.fromConfig(dir.resolve("missing.toml")));
        assertEquals("LS_ERR_CONFIG_INVALID", e.name());
        assertTrue(e.libraryMessage().contains("missing.toml"), e.libraryMessage());
        Party a = init("closer", false);
        Client c = Client.fromConfig(a.config);
        assertThrows(NullPointerException.class, () -> c.send(null, "a.txt", "x"));
        assertThrows(IllegalArgumentException.class, () -> c.send(new byte[1], "a\0b", "x"));
        ArgumentException bad = assertThrows(ArgumentException.class,
                () -> c.send(new byte[1], "dir/", "x"));
        assertEquals("LS_ERR_INVALID_ARGUMENT", bad.name());
        FileException io = assertThrows(FileException.class,
                () -> c.sendFile(dir.resolve("nope.txt"), "x"));
        assertEquals("LS_ERR_IO", io.name());
        c.close();
        c.close();
        assertTrue(c.isClosed());
        assertThrows(ClosedException.class, c::poll);
        assertThrows(ClosedException.class, () -> c.send(new byte[1], "a.txt", "x"));
        assertThrows(ClosedException.class, c::runDueJobs);
    }
}
