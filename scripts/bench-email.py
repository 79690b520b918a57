#!/usr/bin/env python3
"""SOAP over e-mail: two measurements against real Postfix + Dovecot (scripts/mail-servers.sh),
a real layersec-server with its e-mail gateway, and `layersec` clients on e-mail (IMAP).

1. Latency from send to the document in the recipient's inbox, over N documents of 4 KiB:
   `layersec send` (alice, e-mail) -> SMTP -> the service's intake (IMAP IDLE) -> stored,
   receipt mailed -> the service's delivery to bob by SMTP -> bob's `layersec run` (IMAP IDLE,
   or polling every second with `[email] idle = false`) -> opened, written to bob's inbox/.
   The clock starts as `layersec send` starts; a watcher (every 2 ms) sees the file in bob's
   inbox/. p50/p99, IDLE vs polling, in the same run.
2. Throughput of the service's gateway: M signed AS4 mails of documents of SIZE bytes are put
   in the service's intake mailbox while it is stopped (alice's `run` submits them); then the
   service starts and the clock runs until every message is answered (the receipt mailed to
   alice) and delivered (mailed to bob). documents/s. Anchor, same run, same bytes: plain
   SMTP + IMAP by Python (imaplib, smtplib) doing the same mail work without the AS4 part —
   for each of the same M mails: fetch it by IMAP, submit it to another mailbox by SMTP,
   submit a mail of the receipt's size, delete it — one IMAP session and one SMTP connection
   for all (the gateway opens an SMTP connection per mail). The figure is the ratio
   gateway / anchor.

   bash scripts/bench-email.sh   (N=100 M=200 SIZE=10240)
"""
import json, os, random, re, shutil, signal, smtplib, imaplib, socket, ssl, statistics
import subprocess, sys, tempfile, threading, time

T = sys.argv[1]  # the folder of the release binaries
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
N = int(os.environ.get("N", "100"))
M = int(os.environ.get("M", "200"))
SIZE = int(os.environ.get("SIZE", "10240"))
LS, SRV = os.path.join(T, "layersec"), os.path.join(T, "layersec-server")
procs = []


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def run(*args, **kw):
    r = subprocess.run(args, capture_output=True, text=True, **kw)
    if r.returncode != 0:
        sys.exit(f"{args[:3]}: exit {r.returncode}: {r.stderr[-2000:]}")
    return r.stdout


d = tempfile.mkdtemp(prefix="ls-bench-mail-", dir="/tmp")
os.chmod(d, 0o755)
mail = os.path.join(d, "mail")
ports = {k: free_port() for k in ("smtp", "smtps", "imap", "imaps", "pop3", "pop3s")}
env = {}


def cleanup():
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.wait()
    subprocess.run(["bash", os.path.join(ROOT, "scripts/mail-servers.sh"), "stop", mail],
                   capture_output=True)
    shutil.rmtree(d, ignore_errors=True)


try:
    out = run("bash", os.path.join(ROOT, "scripts/mail-servers.sh"), "start", mail,
              *sum(([f"--{k}", str(v)] for k, v in ports.items()), []))
    for line in out.splitlines():
        if "=" in line:
            k, v = line.split("=", 1)
            env[k] = v
    ca = env["CA_PEM"]
    script = os.path.join(ROOT, "scripts/mail-servers.sh")
    for u in ("service", "alice", "bob", "anchor", "anchor2", "anchor3"):
        run("bash", script, "adduser", mail, u, f"{u}-pw")
    addr = lambda u: f"{u}@example.test"
    maildir = lambda u: os.path.join(env["MAIL_ROOT"], u)

    def count(u):
        n = 0
        for sub in ("new", "cur"):
            try:
                n += len(os.listdir(os.path.join(maildir(u), sub)))
            except OSError:
                pass
        return n

    # The service and its gateway.
    svc = os.path.join(d, "service")
    run(SRV, "init", "--dir", svc, "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0")
    with open(os.path.join(d, "service.pw"), "w") as f:
        f.write("service-pw\n")
    cfg = os.path.join(svc, "layersec-server.toml")
    with open(cfg, "a") as f:
        f.write(f'\n[email]\nsmtp_url = "smtps://127.0.0.1:{ports["smtps"]}"\n'
                f'mailbox_url = "imaps://127.0.0.1:{ports["imaps"]}"\naddress = "{addr("service")}"\n'
                f'username = "{addr("service")}"\npassword_file = "{d}/service.pw"\n'
                f'ca_file = "{ca}"\npoll_secs = 1\n')
    state = {"url": None}

    def serve():
        log = open(os.path.join(d, "server.log"), "a")
        p = subprocess.Popen([SRV, "serve", "--config", cfg, "--log-level", "warn"],
                             stdout=subprocess.DEVNULL, stderr=log)
        procs.append(p)
        t = time.monotonic()
        while time.monotonic() - t < 30:
            text = open(os.path.join(d, "server.log")).read()
            m = re.findall(r'"as4":"([^"]*)"', text)
            if m and text.count('"listening"') > serve.starts:
                serve.starts += 1
                state["url"] = m[-1]
                return p
            time.sleep(0.02)
        sys.exit("the service did not start:\n" + open(os.path.join(d, "server.log")).read())
    serve.starts = 0
    server = serve()
    admin = [SRV, "admin", "--config", cfg]

    def client(p, idle=True):
        cdir = os.path.join(d, p)
        info = json.loads(run(LS, "init", "--party", p, "--service", state["url"], "--dir", cdir,
                              "--service-cert", os.path.join(svc, "identity/service.crt"),
                              "--ca-file", os.path.join(svc, "tls/server.crt"), "--json"))
        sub = json.loads(run(*admin, "subscriber", "add", "--organisation", p))["id"]
        run(*admin, "party", "add", "--subscriber", str(sub), "--party", p, "--certificate",
            info["certificate"], "--mail-address", addr(p))
        with open(os.path.join(cdir, "mail.pw"), "w") as f:
            f.write(f"{p}-pw\n")
        c = os.path.join(cdir, "layersec.toml")
        text = open(c).read().replace("interval_secs = 60", "interval_secs = 1")
        text = text.replace("request = true", "request = false")
        text += (f'\n[transport]\nkind = "email"\n\n[email]\n'
                 f'smtp_url = "smtps://127.0.0.1:{ports["smtps"]}"\n'
                 f'mailbox_url = "imaps://127.0.0.1:{ports["imaps"]}"\naddress = "{addr(p)}"\n'
                 f'service_address = "{addr("service")}"\nusername = "{addr(p)}"\n'
                 f'password_file = "mail.pw"\nca_file = "{ca}"\n')
        open(c, "w").write(text)
        return cdir, c, info["certificate"]

    alice_dir, alice_cfg, alice_cert = client("alice")
    bob_dir, bob_cfg, bob_cert = client("bob")
    run(LS, "partners", "add", "bob", bob_cert, "-c", alice_cfg)
    run(LS, "partners", "add", "alice", alice_cert, "-c", bob_cfg)
    inbox = os.path.join(bob_dir, "inbox")
    work = os.path.join(alice_dir, "work")
    os.makedirs(work)

    def set_idle(on):
        text = open(bob_cfg).read()
        text = re.sub(r"\nidle = (true|false)\n", "\n", text)
        open(bob_cfg, "w").write(text + f"idle = {'true' if on else 'false'}\n")

    def latency(mode):
        set_idle(mode == "idle")
        bob = subprocess.Popen([LS, "run", "--json", "-c", bob_cfg], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
        procs.append(bob)
        time.sleep(1.5)
        seen, stop = {}, [False]

        def watch():
            while not stop[0]:
                now = time.monotonic()
                for f in os.listdir(inbox):
                    if f.startswith(f"{mode}-") and not f.endswith(".meta.json") and f not in seen:
                        seen[f] = now
                time.sleep(0.002)
        w = threading.Thread(target=watch)
        w.start()
        started = {}
        body = (b"<Invoice>" + b"x" * 4096)[:4096]
        for i in range(N):
            name = f"{mode}-{i:04}.xml"
            path = os.path.join(work, name)
            open(path, "wb").write(body)
            started[name] = time.monotonic()
            r = subprocess.run([LS, "send", path, "--to", "bob", "-c", alice_cfg],
                               capture_output=True, text=True)
            if r.returncode != 0:
                sys.exit(f"send: exit {r.returncode}: {r.stderr}")
            time.sleep(random.uniform(0, 0.2))
        t = time.monotonic()
        while len(seen) < N and time.monotonic() - t < 120:
            time.sleep(0.05)
        stop[0] = True
        w.join()
        bob.send_signal(signal.SIGTERM)
        bob.wait()
        lat = sorted((seen[n] - started[n]) * 1000 for n in started if n in seen)
        if len(lat) < N:
            sys.exit(f"{mode}: only {len(lat)} of {N} documents arrived")
        p = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))]
        return p(0.5), p(0.99), lat[-1]

    print(f"cores: {os.cpu_count()}; documents: {N} of 4 KiB (latency), {M} of {SIZE} B (throughput)")
    res = {m: latency(m) for m in ("idle", "poll")}
    for m, (p50, p99, mx) in res.items():
        print(f"latency send -> recipient's inbox, {m:4}: p50 {p50:.0f} ms, p99 {p99:.0f} ms, max {mx:.0f} ms")
    print(f"IDLE / polling (1 s): p50 {res['idle'][0] / res['poll'][0]:.2f}x, "
          f"p99 {res['idle'][1] / res['poll'][1]:.2f}x")

    # 2. The gateway's throughput: the intake filled while the service is stopped.
    server.send_signal(signal.SIGTERM)
    server.wait()
    outbox = os.path.join(alice_dir, "outbox", "bob")
    os.makedirs(outbox, exist_ok=True)
    base = count("service")
    for i in range(M):
        tmp = os.path.join(work, f"t{i}")
        open(tmp, "wb").write(os.urandom(SIZE))
        os.rename(tmp, os.path.join(outbox, f"thr-{i:04}.bin"))
    alice = subprocess.Popen([LS, "run", "--json", "-c", alice_cfg], stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    procs.append(alice)
    t = time.monotonic()
    while count("service") - base < M and time.monotonic() - t < 300:
        time.sleep(0.1)
    alice.send_signal(signal.SIGTERM)
    alice.wait()
    if count("service") - base < M:
        sys.exit(f"only {count('service') - base} of {M} mails reached the intake")
    # The same bytes for the anchor.
    intake = [os.path.join(maildir("service"), s, f) for s in ("new", "cur")
              for f in sorted(os.listdir(os.path.join(maildir("service"), s)))]
    raw = [open(p, "rb").read() for p in intake]
    a0, b0 = count("alice"), count("bob")
    t0 = time.monotonic()
    server = serve()
    while (count("alice") - a0 < M or count("bob") - b0 < M) and time.monotonic() - t0 < 600:
        time.sleep(0.01)
    gw = time.monotonic() - t0
    done = min(count("alice") - a0, count("bob") - b0)
    if done < M:
        sys.exit(f"the gateway answered {count('alice') - a0} and delivered {count('bob') - b0} of {M}")
    answers = [os.path.join(maildir("alice"), s, f) for s in ("new", "cur")
               for f in os.listdir(os.path.join(maildir("alice"), s))]
    answer = open(answers[0], "rb").read()
    server.send_signal(signal.SIGTERM)
    server.wait()

    # The anchor: the same mails, plain IMAP + SMTP.
    for i, r in enumerate(raw):
        open(os.path.join(maildir("anchor"), "new", f"{i}.anchor"), "wb").write(r)
    subprocess.run(["chown", "-R", "8:8", maildir("anchor")])
    ctx = ssl.create_default_context(cafile=ca)
    t0 = time.monotonic()
    im = imaplib.IMAP4_SSL("127.0.0.1", ports["imaps"], ssl_context=ctx)
    im.login(addr("anchor"), "anchor-pw")
    im.select("INBOX")
    typ, data = im.uid("SEARCH", None, "ALL")
    sm = smtplib.SMTP_SSL("127.0.0.1", ports["smtps"], context=ctx)
    sm.login(addr("anchor"), "anchor-pw")
    for uid in data[0].split():
        typ, msg = im.uid("FETCH", uid, "(BODY.PEEK[])")
        body = msg[0][1]
        for to, payload in ((addr("anchor2"), body), (addr("anchor3"), answer)):
            sm.sendmail(addr("anchor"), [to], payload)
        im.uid("STORE", uid, "+FLAGS.SILENT", r"(\Deleted)")
        im.expunge()
    sm.quit()
    im.logout()
    while (count("anchor2") < M or count("anchor3") < M) and time.monotonic() - t0 < 600:
        time.sleep(0.01)
    anchor = time.monotonic() - t0
    print(f"gateway: {M} documents of {SIZE} B taken by mail, stored, answered and delivered by "
          f"mail in {gw:.2f} s: {M / gw:.1f} documents/s")
    print(f"anchor (plain IMAP fetch + 2 SMTP submissions + delete, same bytes, one "
          f"connection each): {anchor:.2f} s: "
          f"{M / anchor:.1f} mails/s")
    print(f"gateway / anchor: {(M / gw) / (M / anchor):.2f}x")
finally:
    cleanup()
