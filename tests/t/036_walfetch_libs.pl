# wal-fetch runs once per WAL segment in the server's startup process, so its start-up
# time adds to every segment replayed: libcurl, libpq, libcrypto and libzstd (and the
# libraries they pull in) are loaded only when a command first needs them.
#  - A segment served from the read-ahead cache, with an S3 repository configured,
#    loads none of them (LD_DEBUG=libs lists what the dynamic loader looks for), and is
#    served even when unusable copies of all four come first on LD_LIBRARY_PATH.
#  - A libcurl that cannot be loaded, when wal-fetch must read S3, stops with exit 255
#    (not 1, which PostgreSQL would take for "no such segment" and end recovery), the
#    loader's reason and the package to install; nothing is written to DEST.
#  - A libpq that cannot be loaded: `check` says so and exits 1.
use strict;
use warnings;

use PostgreSQL::Test::Utils;
use Test::More;
use PgarkTest;

my $tmp = PostgreSQL::Test::Utils::tempdir();
my $port = free_tcp_port();    # nothing listens: the S3 repository is never reached
my $config = write_config(<<"EOF", "$tmp/pgark.yaml");
spool: $tmp/spool
repos:
  offsite: { type: s3, endpoint: "http://127.0.0.1:$port", allow_http: true, region: us-east-1, bucket: wal-bucket,
             access_key_id: AKIDEXAMPLE, secret_access_key: wJalrXUtnFEMIK7MDENGbPxRfiCYEXAMPLEKEY }
clusters:
  main:
    conninfo: "host=$tmp/nosocket dbname=postgres"
    repos: [offsite]
    wal_fetch_read_ahead: 0
EOF
my $seg = '000000010000000000000005';
my $wal = "$tmp/pg_wal";
my $dest = "$wal/RECOVERYXLOG";

my $unusable = "$tmp/unusable";
write_file("$unusable/$_", "not a shared library\n")
  for qw(libcurl.so.4 libpq.so.5 libcrypto.so.3 libzstd.so.1);
# A cached copy is served only as a whole segment whose first page header names it:
# the long header of segment 5 on timeline 1, 16 MiB, the rest zeros.
my $cached = pack('v v V Q< V x4 Q< V V', 0xD10D, 0x0002, 1, 5 * 16777216, 0, 1, 16777216, 8192);
$cached .= "\0" x (16777216 - length($cached));
write_file("$wal/.pgark-prefetch/$seg", $cached);
my $r = run_pgark([ '--config', $config, 'wal-fetch', $seg, $dest ],
	env => { LD_DEBUG => 'libs', LD_LIBRARY_PATH => $unusable });
is($r->{rc}, 0, 'wal-fetch serves the cached segment');
ok(slurp_bytes($dest) eq $cached, 'with its bytes');
like($r->{stderr}, qr/find library=libyaml-0\.so/, 'LD_DEBUG lists the libraries looked for');
my @loaded = $r->{stderr} =~ /find library=(lib(?:curl|pq|crypto|zstd)[^ ]*)/g;
is_deeply(\@loaded, [], 'none of libcurl, libpq, libcrypto and libzstd is loaded');
unlink $dest;

# Libraries that the loader finds but cannot load.
my $bogus = "$tmp/bogus";
write_file("$bogus/libcurl.so.4", "not a shared library\n");
write_file("$bogus/libpq.so.5", "not a shared library\n");

$r = run_pgark([ '--config', $config, 'wal-fetch', $seg, $dest ],
	env => { LD_LIBRARY_PATH => $bogus });
is($r->{rc}, 255, 'wal-fetch from S3 without a usable libcurl stops the server (255)');
like($r->{stderr},
	qr/error  could not load "libcurl\.so\.4": \Q$bogus\E\/libcurl\.so\.4: [^\n]+\n/,
	'naming the library and why it could not be loaded');
like($r->{stderr}, qr/hint: install the package libcurl4 \(apt-get install libcurl4\)/,
	'and the package to install');
ok(!-e $dest, 'nothing written to DEST');

$r = run_pgark([ '--config', $config, 'check' ], env => { LD_LIBRARY_PATH => $bogus });
is($r->{rc}, 1, 'check without a usable libpq exits 1');
like($r->{stderr}, qr/error  could not load "libpq\.so\.5": \Q$bogus\E\/libpq\.so\.5: /,
	'naming the library');
like($r->{stderr}, qr/hint: install the package libpq5 \(apt-get install libpq5\)/,
	'and the package to install');

done_testing();
