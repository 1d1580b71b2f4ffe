# End to end through encrypted repositories, one of them S3: a cluster writes to
# [local (posix), offsite (s3, on an s3rver)] with a passphrase, `pgark receive` ships
# the WAL to both and `pgark backup` stores the backup in both. Each repository has its
# own data key, so each names chunks with its own key and has its own manifest.json.
#  - restore from the local repository to the latest WAL: rows equal the source's;
#  - the local repository lost (moved away), restore --repo offsite: the backup and
#    every WAL segment come from S3 (wal-fetch, decrypting, with its read-ahead), and
#    the rows equal the source's again.
use strict;
use warnings;

use HTTP::Tiny;
use JSON::PP;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use PgarkTest;

$ENV{PGARK_TEST_KDF_N} = 1024;    # cheap scrypt for the repositories created here
my $tmp = PostgreSQL::Test::Utils::tempdir();
my $local = "$tmp/repo_local";

my $s3 = s3rver_start();
is(HTTP::Tiny->new(timeout => 10)->put("$s3->{endpoint}/pgark-e2e")->{status},
	200, 'bucket created');

my $src = PostgreSQL::Test::Cluster->new('src');
$src->init(allows_streaming => 1);
$src->append_conf('postgresql.conf', "autovacuum = off\n");
$src->start;
sub sql { return $src->safe_psql('postgres', $_[0]) }

my $pass = write_file("$tmp/passphrase", "e2e test passphrase\n");
my $config = write_config(
	local_offsite_config(
		spool => "$tmp/spool",
		local => $local,
		s3 => $s3,
		bucket => 'pgark-e2e',
		passphrase_file => $pass,
		conninfo => "host=@{[$src->host]} port=@{[$src->port]} dbname=postgres",
		extra => "    backup: { chunk_size: 256KiB }\n"),
	"$tmp/pgark.yaml");

mkdir("$tmp/spool") or die "mkdir: $!";
my $rx = receiver_start($config);
ok(poll_until(sub { -f "$local/main/repo.json" && receiver_log($rx) =~ /offsite/ }, 60),
	'the receiver created the repositories');
ok($src->poll_query_until('postgres',
	"SELECT count(*) = 1 FROM pg_stat_replication WHERE state = 'streaming'"),
	'the receiver streams');

sql('CREATE TABLE t (id int PRIMARY KEY, pad text)');
sql("INSERT INTO t SELECT g, md5(g::text) FROM generate_series(1, 50000) g");

my $r = run_pgark([ '--config', $config, 'backup', '--no-progress', '--json' ]);
is($r->{rc}, 0, 'pgark backup into both encrypted repositories') or diag($r->{stderr});
my $sum = eval { decode_json($r->{stdout}) } // {};
is(scalar @{ $sum->{repositories} // [] }, 2, 'both repositories got it');
my ($lrep) = grep { $_->{name} eq 'local' } @{ $sum->{repositories} // [] };
my ($orep) = grep { $_->{name} eq 'offsite' } @{ $sum->{repositories} // [] };
ok($lrep && $orep && $lrep->{new_chunks} > 0 && $orep->{new_chunks} > 0,
	'each stored its own chunks (own naming key)');

# After the backup: more rows in three more segments, then nothing.
my @segs;
for my $i (1 .. 3)
{
	sql("INSERT INTO t SELECT g, 'after $i' FROM generate_series(50000 + $i * 1000, 50000 + $i * 1000 + 999) g");
	sql("UPDATE t SET pad = 'updated $i' WHERE id % 100 = $i");
	push @segs, sql('SELECT pg_walfile_name(pg_current_wal_lsn())');
	sql('SELECT pg_switch_wal()');
}
for my $seg (@segs)
{
	ok(poll_until(sub {
		my $log = receiver_log($rx);
		$log =~ /shipped \Q$seg\E to repository "local"/
		  && $log =~ /shipped \Q$seg\E to repository "offsite"/ }, 120),
		"segment $seg shipped to both repositories");
}
my $want = sql("SELECT count(*) || ':' || md5(string_agg(id || ':' || pad, ',' ORDER BY id)) FROM t");
note("source: $want");
my $stop = receiver_stop($rx);
is($stop->{rc}, 0, 'receiver stops cleanly');

# Restore into a new node; start it on its own port and wait for the end of recovery.
sub restore_and_check
{
	my ($name, @args) = @_;
	my $node = PostgreSQL::Test::Cluster->new($name);
	my $res = run_pgark([ '--config', $config, 'restore', '--pgdata', $node->data_dir,
		'--start', '--wait', '--port', $node->port, @args ]);
	is($res->{rc}, 0, join(' ', "$name: restore", @args, '--start --wait')) or diag($res->{stderr});
	$node->_update_pid(1);
	is($node->safe_psql('postgres',
		"SELECT count(*) || ':' || md5(string_agg(id || ':' || pad, ',' ORDER BY id)) FROM t"),
		$want, "$name: the rows equal the source's");
	return ($node, $res);
}

my ($n1, $res1) = restore_and_check('from_local');
like($res1->{stdout}, qr/restored backup "\Q$sum->{label}\E" from repository "local"/,
	'from_local: the backup came from the local repository');
$n1->stop;

# The local site is gone: everything must come from S3.
rename($local, "$local.away") or die "rename: $!";
my ($n2, $res2) = restore_and_check('from_s3', '--repo', 'offsite');
like($res2->{stdout}, qr/restored backup "\Q$sum->{label}\E" from repository "offsite"/,
	'from_s3: the backup came from S3');
like(slurp_file($n2->data_dir . '/postgresql.auto.conf'),
	qr/^restore_command = '.* wal-fetch --repo offsite "%f" "%p"'$/m,
	'from_s3: the restore_command reads the chosen repository only');
my $log = slurp_file($n2->data_dir . '/pgark-start.log');
for my $seg (@segs)
{
	like($log, qr/restored log file "\Q$seg\E" from archive/,
		"from_s3: $seg replayed from wal-fetch (S3 only)");
}
$n2->stop;

$src->stop;
done_testing();
