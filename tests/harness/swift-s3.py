#!/usr/bin/python3
"""swift-s3.py -- a one-node OpenStack Swift with its S3 API, for the tests.

    swift-s3.py DIR [--port N] [--bucket NAME]... [--max-listing N] [--user NAME:KEY]...

Unlike s3rver, Swift's s3api verifies every request's SigV4 signature (and
Content-MD5, the payload SHA-256, the clock), so the tests run the S3 driver
against a server that refuses what AWS refuses. Everything runs in this one
process: the account, container and object servers and the proxy (s3api and
tempauth in its pipeline), each an eventlet WSGI server on 127.0.0.1, so the
start costs one Python start-up instead of five. The proxy speaks HTTPS only,
with a certificate from a CA made here for the run (DIR/ca.crt).

The rings are built in-process (RingBuilder) for the ports the listening
sockets already have: no port is picked and then bound later. A token cache in
memory stands in for memcached (tempauth needs one; one process, one dict).

--user adds a user of the same account (access key "test:NAME", secret KEY), so a
test can switch keys. SIGUSR1 revokes users: every access key listed in DIR/revoke
(one a line) is taken out of tempauth at once, and "revoked ACCESS_KEY" is logged.

When the buckets exist, one JSON line goes to stdout:
  {"endpoint": "https://127.0.0.1:PORT", "ca_file": ..., "access_key": "test:tester",
   "secret_key": "testing", "region": "us-east-1", "pid": PID, "dir": DIR}
and the server runs until SIGTERM or SIGINT, or until the process that started
it is gone. The servers' logs go to stderr.
Exit 2 on a usage error, 1 when it could not start (the reason on stderr;
"OpenStack Swift is not installed" when python3-swift is missing).
"""

import argparse
import datetime
import json
import os
import signal
import sys
import time

NOT_INSTALLED = "swift-s3: OpenStack Swift is not installed (python3-swift: %s): run make deps"
try:
    import eventlet
except ImportError as e:
    sys.exit(NOT_INSTALLED % e)

# Before anything else is imported: Swift's servers expect green sockets and threads.
eventlet.patcher.monkey_patch(all=False, socket=True, select=True, thread=True)

import logging  # noqa: E402

ACCESS_KEY = "test:tester"
SECRET_KEY = "testing"
REGION = "us-east-1"
ACCOUNT = "AUTH_test"


def log(msg):
    sys.stderr.write("swift-s3: %s\n" % msg)
    sys.stderr.flush()


class StderrHandler(logging.StreamHandler):
    """Stands in for Swift's syslog handler: its servers log to our stderr."""

    def __init__(self, *args, **kwargs):
        logging.StreamHandler.__init__(self, sys.stderr)


class MemoryCache(object):
    """The subset of swift.common.memcached.MemcacheRing the proxy uses."""

    def __init__(self):
        self.data = {}

    def _live(self, key):
        item = self.data.get(key)
        if item and item[1] and item[1] < time.time():
            del self.data[key]
            return None
        return item

    def get(self, key, raise_on_error=False):
        item = self._live(key)
        return item[0] if item else None

    def set(self, key, value, serialize=True, time=0, min_compress_len=0,
            raise_on_error=False):
        expires = 0
        if time:
            expires = time if time > 30 * 24 * 3600 else _now() + time
        self.data[key] = (value, expires)

    def incr(self, key, delta=1, time=0):
        item = self._live(key)
        value = int(item[0]) + delta if item else delta
        self.set(key, value, time=time)
        return value

    def decr(self, key, delta=1, time=0):
        return self.incr(key, -delta, time)

    def delete(self, key, server_key=None):
        self.data.pop(key, None)

    def set_multi(self, mapping, server_key, serialize=True, time=0,
                  min_compress_len=0):
        for k, v in mapping.items():
            self.set(k, v, time=time)

    def get_multi(self, keys, server_key):
        return [self.get(k) for k in keys]


def _now():
    return time.time()


CACHE = MemoryCache()


def cache_filter(global_conf, **local_conf):
    """paste filter factory: env['swift.cache'] for every request."""

    def factory(app):
        def middleware(env, start_response):
            env["swift.cache"] = CACHE
            return app(env, start_response)

        return middleware

    return factory


def make_ca(d):
    """A CA and a server certificate for 127.0.0.1/localhost, valid for two days."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    import ipaddress

    now = datetime.datetime.utcnow()
    lifetime = datetime.timedelta(days=2)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "pgark test CA (swift)")])
    ca = (x509.CertificateBuilder()
          .subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(minutes=5))
          .not_valid_after(now + lifetime)
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False,
                                       False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
            .issuer_name(ca_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + lifetime)
            .add_extension(x509.SubjectAlternativeName([
                x509.DNSName("localhost"),
                x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .sign(ca_key, hashes.SHA256()))
    pem = serialization.Encoding.PEM
    paths = {}
    for name, data in (
            ("ca.crt", ca.public_bytes(pem)),
            ("server.crt", cert.public_bytes(pem)),
            ("server.key", key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                                             serialization.NoEncryption()))):
        paths[name] = os.path.join(d, name)
        with open(paths[name], "wb") as f:
            f.write(data)
        os.chmod(paths[name], 0o600)
    return paths


def write(path, text):
    with open(path, "w") as f:
        f.write(text)


def check_xattr(path):
    probe = os.path.join(path, ".xattr-probe")
    write(probe, "")
    try:
        os.setxattr(probe, "user.swift.probe", b"1")
    except OSError as e:
        raise SystemExit("swift-s3: %s does not take user extended attributes (%s); "
                         "Swift's object server needs them: use another directory"
                         % (path, e.strerror))
    finally:
        os.unlink(probe)


def create_buckets(port, ca_file, buckets):
    """Through Swift's own API with a tempauth token (the proxy serves both)."""
    import ssl
    import http.client as http_client  # green: the socket module is patched
    ctx = ssl.create_default_context(cafile=ca_file)
    deadline = time.time() + 60
    while True:
        try:
            c = http_client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=30)
            c.request("GET", "/auth/v1.0",
                      headers={"X-Auth-User": ACCESS_KEY, "X-Auth-Key": SECRET_KEY})
            r = c.getresponse()
            r.read()
            token = r.getheader("X-Auth-Token")
            if r.status // 100 != 2 or not token:
                raise RuntimeError("auth answered %d" % r.status)
            for b in buckets:
                c.request("PUT", "/v1/%s/%s" % (ACCOUNT, b), headers={"X-Auth-Token": token})
                r = c.getresponse()
                r.read()
                if r.status // 100 != 2:
                    raise RuntimeError("creating bucket %s answered %d" % (b, r.status))
            c.close()
            return
        except (OSError, RuntimeError) as e:
            if time.time() > deadline:
                raise SystemExit("swift-s3: could not create the buckets: %s" % e)
            log("not ready yet (%s); retrying" % e)
            eventlet.sleep(0.2)


SERVER_CONF = """[DEFAULT]
devices = {node}
mount_check = false
bind_ip = 127.0.0.1
bind_port = {port}
workers = 0
swift_dir = {etc}
log_name = {name}-server
log_level = {level}
[pipeline:main]
pipeline = {name}-server
[app:{name}-server]
use = egg:swift#{name}
"""

PROXY_CONF = """[DEFAULT]
bind_ip = 127.0.0.1
bind_port = {port}
workers = 0
swift_dir = {etc}
log_name = proxy-server
log_level = {level}
[pipeline:main]
pipeline = catch_errors gatekeeper healthcheck proxy-logging cache listing_formats s3api tempauth copy slo dlo proxy-logging proxy-server
[app:proxy-server]
use = egg:swift#proxy
account_autocreate = true
[filter:tempauth]
use = egg:swift#tempauth
user_test_tester = {secret} .admin
{users}
[filter:s3api]
use = egg:swift#s3api
location = {region}
max_bucket_listing = {max_listing}
[filter:cache]
use = call:__main__:cache_filter
[filter:catch_errors]
use = egg:swift#catch_errors
[filter:gatekeeper]
use = egg:swift#gatekeeper
[filter:healthcheck]
use = egg:swift#healthcheck
[filter:proxy-logging]
use = egg:swift#proxy_logging
[filter:listing_formats]
use = egg:swift#listing_formats
[filter:copy]
use = egg:swift#copy
[filter:slo]
use = egg:swift#slo
[filter:dlo]
use = egg:swift#dlo
"""


def main():
    p = argparse.ArgumentParser(description="one-node Swift with s3api over HTTPS")
    p.add_argument("dir", help="where the store, the configuration and the CA go")
    p.add_argument("--port", type=int, default=0, help="the S3 endpoint's port (0: any free)")
    p.add_argument("--bucket", action="append", default=[], help="create this bucket")
    p.add_argument("--max-listing", type=int, default=1000,
                   help="keys per listing page at most (S3's is 1000)")
    p.add_argument("--user", action="append", default=[],
                   help="another user NAME:KEY of the account (access key test:NAME)")
    p.add_argument("--log-level", default="INFO")
    return serve(p.parse_args())


def serve(a):
    started = time.time()
    d = os.path.abspath(a.dir)
    etc, node = os.path.join(d, "etc"), os.path.join(d, "node")
    os.makedirs(etc, exist_ok=True)
    os.makedirs(os.path.join(node, "sdb1"), exist_ok=True)
    check_xattr(os.path.join(node, "sdb1"))

    try:
        import swift.common.utils as su
        import swift.common.middleware.s3api  # noqa: F401
    except ImportError as e:
        sys.exit(NOT_INSTALLED % e)
    su.ThreadSafeSysLogHandler = StderrHandler
    # A throwaway store: no fsync (before the servers' modules import these names).
    su.fsync = su.fdatasync = lambda fd: None
    su.fsync_dir = lambda path: None
    write(os.path.join(etc, "swift.conf"),
          "[swift-hash]\nswift_hash_path_suffix = pgarktest\nswift_hash_path_prefix = pgarktest\n"
          "[storage-policy:0]\nname = Policy-0\ndefault = yes\n")
    su.set_swift_dir(etc)
    os.environ["TZ"] = "UTC+0"
    time.tzset()

    socks = {n: eventlet.listen(("127.0.0.1", 0)) for n in ("account", "container", "object")}
    proxy_sock = eventlet.listen(("127.0.0.1", a.port))
    ports = {n: s.getsockname()[1] for n, s in socks.items()}
    port = proxy_sock.getsockname()[1]

    from swift.common.ring import RingBuilder
    for n, pt in ports.items():
        b = RingBuilder(0, 1, 1)
        b.add_dev({"id": 0, "region": 1, "zone": 1, "ip": "127.0.0.1", "port": pt,
                   "device": "sdb1", "weight": 1, "meta": ""})
        b.rebalance()
        b.get_ring().save(os.path.join(etc, "%s.ring.gz" % n))

    tls = make_ca(d)
    from swift.common.wsgi import loadapp
    from swift.common.http_protocol import SwiftHttpProtocol
    from eventlet import wsgi

    apps = []
    for n, s in socks.items():
        conf = os.path.join(etc, "%s-server.conf" % n)
        write(conf, SERVER_CONF.format(node=node, port=ports[n], etc=etc, name=n,
                                       level=a.log_level))
        apps.append((n, loadapp(conf), s))
    conf = os.path.join(etc, "proxy-server.conf")
    users = []
    for u in a.user:
        name, sep, key = u.partition(":")
        if not sep or not name or not key:
            log("--user wants NAME:KEY, not %r" % u)
            return 2
        users.append("user_test_%s = %s .admin" % (name, key))
    # Every TempAuth the pipeline makes, so that SIGUSR1 can take users out of it.
    from swift.common.middleware import tempauth
    auths = []
    tempauth_init = tempauth.TempAuth.__init__

    def remember(self, *args, **kwargs):
        tempauth_init(self, *args, **kwargs)
        auths.append(self)

    tempauth.TempAuth.__init__ = remember
    write(conf, PROXY_CONF.format(port=port, etc=etc, secret=SECRET_KEY, region=REGION,
                                  level=a.log_level, max_listing=a.max_listing,
                                  users="\n".join(users)))
    apps.append(("proxy", loadapp(conf),
                 eventlet.wrap_ssl(proxy_sock, certfile=tls["server.crt"],
                                   keyfile=tls["server.key"], server_side=True)))

    class NullLog(object):
        def write(self, *args):
            pass

    for n, app, s in apps:
        eventlet.spawn(wsgi.server, s, app, NullLog(), protocol=SwiftHttpProtocol,
                       socket_timeout=60, capitalize_response_headers=False,
                       custom_pool=eventlet.GreenPool(1024))

    # nothing to save: the caller throws DIR away
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: os._exit(0))

    def revoke(*_):
        try:
            with open(os.path.join(d, "revoke")) as f:
                keys = [line.strip() for line in f if line.strip()]
        except OSError as e:
            log("cannot read the users to revoke: %s" % e)
            return
        for k in keys:
            for auth in auths:
                auth.users.pop(k, None)
            CACHE.data.clear()  # no token or signature check cached for the key
            log("revoked %s" % k)

    signal.signal(signal.SIGUSR1, revoke)

    create_buckets(port, tls["ca.crt"], a.bucket)
    log("ready on port %d after %.1f s" % (port, time.time() - started))
    sys.stdout.write(json.dumps({
        "endpoint": "https://127.0.0.1:%d" % port,
        "port": port,
        "ca_file": tls["ca.crt"],
        "access_key": ACCESS_KEY,
        "secret_key": SECRET_KEY,
        "region": REGION,
        "pid": os.getpid(),
        "dir": d,
    }) + "\n")
    sys.stdout.flush()
    # a test that died without stopping us (killed by prove's timeout): go with it
    parent = os.getppid()
    while os.getppid() == parent:
        eventlet.sleep(1)
    log("the process that started this server is gone; stopping")
    return 0


if __name__ == "__main__":
    sys.exit(main())
