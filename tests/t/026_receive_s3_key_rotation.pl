# S3 keys rotated under a running receiver (issue 22, item 3), against OpenStack Swift's
# S3 API, which checks every signature:
#  - the receiver ships with key A, read from access_key_id_file and
#    secret_access_key_file;
#  - both files are replaced (written aside, renamed over) with key B, and A is revoked
#    on the server: A is refused from then on;
#  - with no restart and no SIGHUP, the receiver signs with B: later segments reach the
#    bucket, byte for byte, and its log says where the new key came from. The files
#    are looked at only when a request is refused here (the periodic look, every 5 s
#    by default, is put off for an hour): the refused upload is sent again with B.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use PgarkTest;
use PgarkSwift;

my $tmp = PostgreSQL::Test::Utils::tempdir();
my $sw = swift_start(buckets => ['pgark-keys'], users => { rotated => 'secret-b' });
my ($key_a, $secret_a) = ($sw->{access_key}, $sw->{secret_key});
my ($key_b, $secret_b) = ('test:rotated', 'secret-b');

my $src = PostgreSQL::Test::Cluster->new('src');
$src->init(allows_streaming => 1);
$src->append_conf('postgresql.conf', "autovacuum = off\n");
$src->start;
sub sql { return $src->safe_psql('postgres', $_[0]) }

# A rotation tool's way: the new file written aside, then renamed over the old one.
mkdir("$tmp/keys") or die "mkdir: $!";
sub put_key
{
	my ($name, $text) = @_;
	write_file("$tmp/keys/$name.new", "$text\n");
	chmod(0600, "$tmp/keys/$name.new") or die "chmod: $!";
	rename("$tmp/keys/$name.new", "$tmp/keys/$name") or die "rename: $!";
}
put_key('id', $key_a);
put_key('secret', $secret_a);

sub config_text
{
	my ($keys) = @_;
	return <<"EOF";
spool: $tmp/spool
log: { level: detail }
repos:
  swift:
    type: s3
    endpoint: $sw->{endpoint}
    region: $sw->{region}
    bucket: pgark-keys
    ca_file: $sw->{ca_file}
    retries: 1
$keys
clusters:
  main:
    conninfo: "host=@{[$src->host]} port=@{[$src->port]} dbname=postgres"
    create_slot: true
    partial_upload_interval: 0s
    repos: [swift]
EOF
}
my $config = write_config(
	config_text("    access_key_id_file: $tmp/keys/id\n    secret_access_key_file: $tmp/keys/secret"),
	"$tmp/pgark.yaml");
my $config_a = write_config(
	config_text("    access_key_id: \"$key_a\"\n    secret_access_key: $secret_a"),
	"$tmp/pgark-a.yaml");
my $config_b = write_config(
	config_text("    access_key_id: \"$key_b\"\n    secret_access_key: $secret_b"),
	"$tmp/pgark-b.yaml");

mkdir("$tmp/spool") or die "mkdir: $!";
my $rx = receiver_start($config, env => { PGARK_TEST_S3_CRED_CHECK_MS => 3600 * 1000 });
ok($src->poll_query_until('postgres',
	"SELECT count(*) = 1 FROM pg_stat_replication WHERE state = 'streaming'"),
	'the receiver streams');

# One segment, filled and switched; waits for the receiver to say it shipped it.
sub switch_one
{
	sql("CREATE TABLE IF NOT EXISTS t (id int, pad text)");
	sql("INSERT INTO t SELECT g, md5(g::text) FROM generate_series(1, 1000) g");
	my $seg = sql('SELECT pg_walfile_name(pg_current_wal_lsn())');
	sql('SELECT pg_switch_wal()');
	my $ok = poll_until(sub { receiver_log($rx) =~ /shipped \Q$seg\E to repository "swift"/ }, 120);
	return ($seg, $ok);
}
sub ship_one
{
	my ($what) = @_;
	my ($seg, $ok) = switch_one();
	ok($ok, "$what: $seg shipped") or diag(receiver_log($rx));
	return $seg;
}

# Its bytes as the repository holds them, through wal-fetch with the key given.
sub fetched_equal
{
	my ($cfg, $seg) = @_;
	unlink("$tmp/fetched");
	my $r = run_pgark([ '--config', $cfg, 'wal-fetch', $seg, "$tmp/fetched" ]);
	return 0 unless $r->{rc} == 0;
	return slurp_bytes("$tmp/fetched") eq slurp_bytes($src->data_dir . "/pg_wal/$seg");
}

my $seg_a = ship_one('with key A');
ok(fetched_equal($config_a, $seg_a), "$seg_a is in the bucket, signed for with key A");

# The rotation: both files replaced with key B, then A revoked on the server.
my $pid = $rx->{pid};
put_key('id', $key_b);
put_key('secret', $secret_b);
swift_revoke($sw, $key_a);

my $r = run_pgark([ '--config', $config_a, 'check' ]);
like($r->{stdout}, qr/^FAIL  repository:swift .*in repository "swift" refused: (SignatureDoesNotMatch|InvalidAccessKeyId|AccessDenied)/m,
	'key A is refused by the server after the switch') or diag($r->{stdout} . $r->{stderr});

my @after = map { ship_one("with key B ($_)") } 1 .. 2;
for my $seg (@after)
{
	ok(fetched_equal($config_b, $seg), "$seg is in the bucket, byte for byte");
}
is($rx->{pid}, $pid, 'the same receiver ships them');
ok(receiver_alive($rx), '... and still runs: no restart');
unlike(receiver_log($rx), qr/configuration reloaded/, '... and no reload either');
like(receiver_log($rx),
	qr/repository "swift": S3 credentials changed: access key id \("\Q$tmp\E\/keys\/id"\), secret access key \("\Q$tmp\E\/keys\/secret"\); signing with them from now on/,
	'the receiver says which files the new key came from');
like(receiver_log($rx),
	qr/repository "swift": s3 [A-Z]+ of "[^"]+" refused with the previous credentials; sending it again with the new ones/,
	'the upload refused with key A was sent again with key B');
unlike(receiver_log($rx), qr/\Q$secret_b\E/, 'the new secret is in no log line');
unlike(receiver_log($rx), qr/ (warn|error) /, 'and nothing went wrong on the way');

my $stop = receiver_stop($rx);
is($stop->{rc}, 0, 'the receiver stops cleanly');
done_testing();
