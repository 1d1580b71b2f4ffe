# End to end against OpenStack Swift's S3 API as the only repository, over HTTPS with a
# CA of the test's own: a server that verifies every signature, Content-MD5 and payload
# hash, and answers a conditional PUT with 501 NotImplemented.
#  - `pgark receive` and `pgark backup` start together on the new, encrypted
#    repository: both create repo.json at once without a conditional PUT, and must end
#    with one data key (the one that lost adopts the winner's; said once at info);
#  - WAL is shipped by the receiver, a backup taken, rows committed after it;
#  - `pgark verify` reads every object back: exit 0;
#  - restore to a time between two commits: exactly the rows committed at or before it,
#    every byte from Swift (backup and WAL through wal-fetch);
#  - without the CA the same configuration is refused with the TLS error.
use strict;
use warnings;

use JSON::PP;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep time);
use PgarkTest;
use PgarkSwift;

$ENV{PGARK_TEST_KDF_N} = 1024;    # cheap scrypt for the repository created here
my $tmp = PostgreSQL::Test::Utils::tempdir();

my $sw = swift_start(buckets => ['pgark-e2e']);
like($sw->{endpoint}, qr{^https://127\.0\.0\.1:\d+$}, 'swift serves HTTPS');

my $src = PostgreSQL::Test::Cluster->new('src');
$src->init(allows_streaming => 1);
$src->append_conf('postgresql.conf', "autovacuum = off\ntrack_commit_timestamp = on\n");
$src->start;
sub sql { return $src->safe_psql('postgres', $_[0]) }

my $pass = write_file("$tmp/passphrase", "swift e2e passphrase\n");
sub config_text
{
	my ($ca_line) = @_;
	return <<"EOF";
spool: $tmp/spool
log: { level: detail }
repos:
  swift:
    type: s3
    endpoint: $sw->{endpoint}
    region: $sw->{region}
    bucket: pgark-e2e
    prefix: site1/
    access_key_id: "$sw->{access_key}"
    secret_access_key: $sw->{secret_key}
$ca_line
encryption: { passphrase_file: $pass }
clusters:
  main:
    conninfo: "host=@{[$src->host]} port=@{[$src->port]} dbname=postgres"
    create_slot: true
    partial_upload_interval: 0s
    repos: [swift]
    backup: { chunk_size: 256KiB }
EOF
}
my $config = write_config(config_text("    ca_file: $sw->{ca_file}"), "$tmp/pgark.yaml");

sql('CREATE TABLE t (id int PRIMARY KEY, pad text)');
sql("INSERT INTO t SELECT g, md5(g::text) FROM generate_series(1, 20000) g");

# The receiver and the first backup at once: both find no repo.json.
mkdir("$tmp/spool") or die "mkdir: $!";
my $rx = receiver_start($config);
my $r = run_pgark([ '--config', $config, 'backup', '--no-progress', '--json' ]);
is($r->{rc}, 0, 'pgark backup into Swift') or diag($r->{stderr});
my $label = eval { decode_json($r->{stdout})->{label} } // 'none';
ok($src->poll_query_until('postgres',
	"SELECT count(*) = 1 FROM pg_stat_replication WHERE state = 'streaming'"),
	'the receiver streams');

my $said = () = (receiver_log($rx) . $r->{stderr})
  =~ /the store does not implement conditional writes \(s3 PUT of object "site1\/main\/repo\.json\.probe-[0-9a-f]+" in repository "swift" failed: HTTP 501 NotImplemented: Conditional object PUTs are not supported\); creating "main\/repo\.json" through candidates in "main\/repo\.json\.new\/" instead/g;
ok($said >= 1 && $said <= 2,
	"the missing conditional PUT is said at info level, once per process ($said)");
my $created = () = (receiver_log($rx) . $r->{stderr})
  =~ /created repository for cluster "main" in "swift" \(encrypted\)/g;
is($created, 1, 'one of the two created the repository');

# Rows after the backup, one per transaction, with their commit times.
my %row;
sub commit_row
{
	my ($id) = @_;
	sql("INSERT INTO t VALUES ($id, 'after backup $id')");
	my ($ts, $us) = split /\|/,
	  sql("SELECT pg_xact_commit_timestamp(xmin), extract(epoch FROM pg_xact_commit_timestamp(xmin)) * 1000000 FROM t WHERE id = $id");
	$row{$id} = { ts => $ts, us => $us };
}
# A target must be a second past the backup's stop time (whole seconds).
my $backup_done = time();
usleep(100_000) while time() < $backup_done + 1.2;
commit_row($_) for 30001 .. 30005;
my $target = $row{30003};
ok($src->poll_query_until('postgres', "SELECT clock_timestamp() > '$target->{ts}'::timestamptz"),
	'the clock is past the target');
commit_row($_) for 30006 .. 30008;
my $seg = sql('SELECT pg_walfile_name(pg_current_wal_lsn())');
sql('SELECT pg_switch_wal()');
commit_row(30009);    # so that a transaction ends after the target's segment
my $seg2 = sql('SELECT pg_walfile_name(pg_current_wal_lsn())');
sql('SELECT pg_switch_wal()');
for my $s ($seg, $seg2)
{
	ok(poll_until(sub { receiver_log($rx) =~ /shipped \Q$s\E to repository "swift"/ }, 120),
		"segment $s shipped to Swift");
}
my $stop = receiver_stop($rx);
is($stop->{rc}, 0, 'receiver stops cleanly');

# Everything reads back: one data key for both writers.
$r = run_pgark([ '--config', $config, 'verify' ]);
is($r->{rc}, 0, 'pgark verify of the Swift repository') or diag($r->{stdout}, $r->{stderr});

# Restore to the time of row 30003's commit, from Swift alone.
my $want = sql("SELECT string_agg(id::text, ',' ORDER BY id) FROM t WHERE id <= 30003");
my $node = PostgreSQL::Test::Cluster->new('restored');
$r = run_pgark([ '--config', $config, 'restore', '--pgdata', $node->data_dir,
	'--target-time', $target->{ts}, '--target-action', 'promote',
	'--start', '--wait', '--port', $node->port ]);
is($r->{rc}, 0, "restore --target-time '$target->{ts}' from Swift") or diag($r->{stderr});
like($r->{stdout}, qr/restored backup "\Q$label\E" from repository "swift"/,
	'the backup came from Swift');
$node->_update_pid(1);
is($node->safe_psql('postgres', "SELECT string_agg(id::text, ',' ORDER BY id) FROM t"),
	$want, 'exactly the rows committed at or before the target');
is($node->safe_psql('postgres', "SELECT md5(string_agg(id || ':' || pad, ',' ORDER BY id)) FROM t"),
	sql("SELECT md5(string_agg(id || ':' || pad, ',' ORDER BY id)) FROM t WHERE id <= 30003"),
	'and their contents');
like(slurp_file($node->data_dir . '/pgark-start.log'),
	qr/restored log file "\Q$seg\E" from archive/,
	"$seg replayed through wal-fetch from Swift");
$node->stop;

# The same repository without the CA: the system trust store does not know it.
my $noca = write_config(config_text(''), "$tmp/noca.yaml");
$r = run_pgark([ '--config', $noca, 'verify' ]);
isnt($r->{rc}, 0, 'without ca_file the store is refused');
like($r->{stdout} . $r->{stderr},
	qr/repository "swift": GET "https:\/\/127\.0\.0\.1:\d+\/pgark-e2e\/site1\/main\/repo\.json" failed: SSL certificate problem: unable to get local issuer certificate/,
	'with the TLS error');

$src->stop;
swift_stop($sw);
done_testing();
