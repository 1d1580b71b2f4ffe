# pgark drill against a real PostgreSQL 15 with checksums and a tablespace, the WAL
# streamed by `pgark receive` into a local and an S3 repository (s3rver), one backup
# shared by every drill of this file:
#  - a drill to latest from the local repository passes: its record, in both
#    repositories, has every phase, an RTO that is their sum, the RPO against the
#    primary's last commit, and the checks (target, checksums, pg_class, amcheck); the
#    server is stopped and the scratch directory removed; the primary's tablespace is not
#    touched (the drill's goes beside its scratch directory);
#  - a drill to a time with --sql: a check that holds (the rows up to the target, exactly)
#    and one that does not: exit 3 naming the failing check and what it returned;
#  - a damaged chunk of the backup: exit 3 naming the chunk, and the record says so;
#  - a drill from the S3 repository alone passes, and --keep leaves its server running;
#  - without --repo, the repository drilled longest ago is drilled; a scratch directory
#    that is not empty is refused (exit 2) and left as it was; bad options exit 2.
use strict;
use warnings;

use File::Path qw(make_path);
use HTTP::Tiny;
use JSON::PP;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep time);
use PgarkTest;

my $tmp = PostgreSQL::Test::Utils::tempdir();
my $local = "$tmp/repo";
my $s3 = s3rver_start();
s3_create_bucket($s3, 'drills');

my $src = PostgreSQL::Test::Cluster->new('src');
$src->init(allows_streaming => 1, extra => ['--data-checksums']);
$src->append_conf('postgresql.conf', "track_commit_timestamp = on\nautovacuum = off\n");
$src->start;
sub sql { return $src->safe_psql('postgres', $_[0]) }

my $config = write_config(
	receiver_config(
		spool => "$tmp/spool",
		repos => [ [ local => $local ] ],
		s3 => [ [ offsite => $s3, 'drills', { prefix => 'site1/' } ] ],
		conninfo => 'host=' . $src->host . ' port=' . $src->port . ' dbname=postgres',
		create_slot => 1,
		partial => '1s',
		extra => "    backup: { chunk_size: 256KiB }\n"),
	"$tmp/pgark.yaml");
my $sdir = "$tmp/spool/main";
make_path("$tmp/spool");
sub pgark { return run_pgark([ '--config', $config, @_ ]) }

my $rx = receiver_start($config);
ok(poll_until(sub { (read_status($sdir) // {})->{connected} }, 60), 'the receiver streams')
  or diag(receiver_log($rx));

my $tsdir = "$tmp/ts_primary";
make_path($tsdir);
sql("CREATE TABLESPACE ts1 LOCATION '$tsdir'");
sql('CREATE TABLE t (id int PRIMARY KEY, pad text)');
sql("INSERT INTO t SELECT g, md5(g::text) FROM generate_series(1, 20000) g");
sql('CREATE TABLE in_ts (id int PRIMARY KEY, v text) TABLESPACE ts1');
sql("INSERT INTO in_ts SELECT g, md5(g::text) FROM generate_series(1, 1000) g");
sql('CREATE DATABASE other');
$src->safe_psql('other', 'CREATE TABLE o (id int PRIMARY KEY); INSERT INTO o SELECT generate_series(1, 10)');

my $r = pgark('backup', '--no-progress', '--json');
is($r->{rc}, 0, 'backup') or diag($r->{stderr});
my $label = eval { decode_json($r->{stdout})->{label} } // 'none';
my $backup_done = time();
usleep(100_000) while time() < $backup_done + 1.2;

# Rows after the backup, one transaction each, their commit times known.
my @after;
for my $i (1 .. 6)
{
	my $id = 100000 + $i;
	sql("INSERT INTO t VALUES ($id, 'after')");
	push @after, sql("SELECT extract(epoch FROM pg_xact_commit_timestamp(xmin)) * 1000000 FROM t WHERE id = $id");
	usleep(20_000);
}
sql('SELECT pg_switch_wal()');
my $end = sql('SELECT pg_current_wal_lsn()');
for my $repo (qw(local offsite))
{
	ok(poll_until(sub { lsn_int(repo_status($sdir, $repo)->{shipped_lsn} // '0/0') >= lsn_int($end) }, 60),
		"repository $repo holds the WAL up to $end");
}
my $ts_before = join(',', sort glob("$tsdir/*/*/*"));

# A drill, --json: (exit, record)
sub drill
{
	my (@args) = @_;
	my $res = pgark('drill', '--json', @args);
	my $out = eval { decode_json($res->{stdout}) } // {};
	return ($res, $out->{drills}[0] // {}, $out);
}

# A record as stored in a repository.
sub stored_record
{
	my ($root, $name) = @_;
	my $got = repo_cat($root, 'main', "drills/$name.json");
	return $got->{rc} == 0 ? (eval { decode_json($got->{stdout}) } // {}) : undef;
}

# --- a drill to latest from the local repository ---------------------------------------

my ($res, $rec) = drill('--repo', 'local');
is($res->{rc}, 0, 'drill to latest from the local repository: exit 0') or diag($res->{stdout} . $res->{stderr});
is($rec->{result}, 'passed', 'its record says passed');
is($rec->{repository}, 'local', 'and names the repository');
is($rec->{backup}, $label, 'and the backup');
is($rec->{target}{kind}, 'latest', 'target latest');
my %ph = %{ $rec->{phases_ms} // {} };
is_deeply([ sort keys %ph ], [qw(choose files replay start validate)], 'the record has every phase');
cmp_ok($ph{files} // 0, '>', 0, 'files took time');
cmp_ok($ph{start} // 0, '>', 0, 'the start took time');
cmp_ok($ph{validate} // 0, '>', 0, 'the validation took time');
is($rec->{rto_ms}, $ph{choose} + $ph{files} + $ph{start} + $ph{replay}, 'the RTO is the sum of the phases to the target');
cmp_ok($rec->{total_ms}, '>=', $rec->{rto_ms} + $ph{validate}, 'the total includes the validation');
ok($rec->{rto_met}, 'within rto_target (30m by default)');
is($rec->{rto_target_ms}, 30 * 60 * 1000, 'rto_target defaults to 30m');
# The receiver runs: its status.json names the newest commit it holds, which is the
# primary's last commit here (asked of the primary only without a fresh status).
is($rec->{rpo_source}, 'receiver', 'the RPO is measured against the receiver\'s newest commit');
is($rec->{rpo_seconds}, 0, 'nothing committed on the primary is missing');
my %chk = map { ($_->{name} => $_) } @{ $rec->{checks} // [] };
is($chk{$_}{result}, 'ok', "check $_ passed") for qw(restore target checksums pg_class amcheck);
like($chk{amcheck}{detail}, qr/bt_index_check on \d+ B-tree indexes in 3 databases/, 'amcheck ran in every database');
like($chk{checksums}{detail}, qr/pg_checksums: \d+ blocks, no bad checksum/, 'pg_checksums ran');
like($rec->{reached}{last_transaction}, qr/^\d{4}-/, 'the last transaction replayed is named');
ok(!-e "$sdir/drill" && !-e "$sdir/drill-tablespaces", 'the scratch directory is removed');
is(join(',', sort glob("$tsdir/*/*/*")), $ts_before, 'the primary\'s tablespace is untouched');
for my $where ([ local => $local ], [ offsite => "config:$config:offsite" ])
{
	my $st = stored_record($where->[1], $rec->{name});
	is($st && $st->{result}, 'passed', "the record is in repository $where->[0]");
}

# --- a drill to a time, with the DBA's checks --------------------------------------------

# Halfway between the third and the fourth row after the backup.
my $target_us = int(($after[2] + $after[3]) / 2);
my $target = sql("SELECT to_timestamp($target_us / 1000000.0)");
my $n_at = 20000 + 3;
my $sqlfile = write_file("$tmp/checks.sql", <<"EOF");
-- the rows at the target, exactly
SELECT count(*) = $n_at FROM t;
SELECT count(*) = 1000 FROM in_ts;   -- the tablespace came back
SELECT count(*) = 999
  FROM t;
\\c other
SELECT count(*) = 10 FROM o;
EOF
# In words this time; the record is read back from the repository.
$r = pgark('drill', '--repo', 'local', '--target-time', $target, '--sql', $sqlfile);
is($r->{rc}, 3, 'a drill whose check fails: exit 3') or diag($r->{stdout} . $r->{stderr});
like($r->{stdout}, qr/^drill of repository "local" \(cluster "main"\): FAILED$/m, 'it says it failed');
like($r->{stdout}, qr/^  RTO \S+.* \(rto_target 30m: met\): choose .*, files .*, start .*, replay .*; validation /m,
	'with the RTO by phase');
like($r->{stdout}, qr/^  FAILED   sql +line 4: "SELECT count\(\*\) = 999 FROM t" returned f, not true$/m,
	'naming the check that failed');
my ($name) = $r->{stdout} =~ m{record drills/(\S+)\.json written to 2 of 2 repositories};
$rec = stored_record($local, $name // 'none') // {};
is($rec->{result}, 'failed', 'its record says failed');
like($rec->{error}, qr/^check "SELECT count\(\*\) = 999 FROM t" \(\Q$sqlfile\E line 4, database "postgres"\) returned f, not true$/,
	'naming the check and what it returned');
my @sqlc = grep { $_->{name} eq 'sql' } @{ $rec->{checks} // [] };
is_deeply([ map { $_->{result} } @sqlc ], [qw(ok ok failed ok)], 'each check has its result, in order');
like($sqlc[3]{detail}, qr/^line 7: "SELECT count\(\*\) = 10 FROM o" is true$/, '\\c other ran the last one in database "other"');
%chk = map { ($_->{name} => $_) } @{ $rec->{checks} // [] };
is($chk{target}{result}, 'ok', 'the point reached is the target');
like($chk{target}{detail}, qr/the next commit in the archive \(.*\) is after it/, 'the next commit archived is after it');
is($rec->{target}{kind}, 'time', 'the record has the target');
is($rec->{rpo_seconds}, 0, 'every transaction up to the target was replayed: RPO 0');

# --- a damaged chunk ------------------------------------------------------------------------

my $m = repo_cat($local, 'main', "backups/$label/manifest.json");
my ($big) = grep { ($_->{chunks} // [])->[0] } sort { ($b->{size} // 0) <=> ($a->{size} // 0) }
  map { eval { decode_json($_) } // {} } split /\n/, $m->{stdout};
my $chunk = $big->{chunks}[0];
my $cfile = "$local/main/chunks/" . substr($chunk, 0, 2) . "/$chunk";
my $saved = slurp_bytes($cfile);
{
	open(my $fh, '+<:raw', $cfile) or die "open $cfile: $!";
	my $at = int(length($saved) / 2);
	seek($fh, $at, 0);
	print $fh chr(ord(substr($saved, $at, 1)) ^ 0xff);
	close($fh);
}
($res, $rec) = drill('--repo', 'local');
is($res->{rc}, 3, 'a damaged chunk: exit 3') or diag($res->{stdout} . $res->{stderr});
is($rec->{result}, 'failed', 'the record says failed');
like($rec->{error}, qr/\Q$chunk\E/, 'naming the chunk');
like($rec->{error}, qr/\Q$big->{path}\E/, 'and its file');
%chk = map { ($_->{name} => $_) } @{ $rec->{checks} // [] };
is($chk{restore}{result}, 'failed', 'the restore check failed');
ok(!-e "$sdir/drill", 'the scratch directory is removed');
my $st = stored_record($local, $rec->{name});
like($st && $st->{error}, qr/\Q$chunk\E/, 'the stored record names the chunk');
write_file($cfile, $saved, 0600);

# --- from the S3 repository alone, kept --------------------------------------------------

my $keep = "$tmp/kept";
($res, $rec) = drill('--repo', 'offsite', '--keep', '--pgdata', $keep);
is($res->{rc}, 0, 'a drill from the S3 repository alone: exit 0') or diag($res->{stdout} . $res->{stderr});
is($rec->{repository}, 'offsite', 'of repository offsite');
like(slurp_file("$keep/postgresql.auto.conf"), qr/wal-fetch --repo offsite "%f" "%p"/,
	'its WAL came from that repository only');
ok($rec->{kept}, '--keep: the record says the server was kept');
my $auto = slurp_file("$keep/postgresql.auto.conf");
my ($port) = $auto =~ /^port = (\d+)$/m;
my ($sock) = $auto =~ /^unix_socket_directories = '([^']+)'$/m;
my $q = run_cmd([ 'psql', '-X', '-A', '-t', '-h', $sock, '-p', $port, '-d', 'postgres',
	'-c', 'SELECT count(*) FROM t' ]);
is($q->{stdout}, "20006\n", 'the kept server answers on its socket, with every row');
$q = run_cmd([ 'psql', '-X', '-A', '-t', '-h', $sock, '-p', $port, '-d', 'postgres', '-c',
	"SELECT current_setting('listen_addresses') = '' AND current_setting('archive_mode') = 'off' "
	  . "AND current_setting('hba_file') LIKE '%/pgark-drill-hba.conf' AND current_setting('cluster_name') = 'pgark-drill' "
	  . "AND (SELECT count(*) FROM pg_replication_slots) = 0" ]);
is($q->{stdout}, "t\n", 'a throwaway server: no TCP, no archiving, its own pg_hba.conf, no replication slot');
is(run_cmd([ 'pg_ctl', '-D', $keep, '-m', 'fast', 'stop' ])->{rc}, 0, 'and stops with pg_ctl');

# --- which repository, and refusals --------------------------------------------------------

# offsite was drilled last: without --repo, local is (and a non-empty scratch directory
# stops it before anything is written).
($res, $rec) = drill('--pgdata', $keep);
is($res->{rc}, 2, 'a scratch directory that is not empty: exit 2');
is($rec->{repository}, 'local', 'without --repo, the repository drilled longest ago');
like($rec->{error}, qr/the drill's scratch directory "\Q$keep\E" is not empty/, 'the error names the directory');
ok(-f "$keep/PG_VERSION", 'the directory is left as it was');

$r = pgark('drill', '--backup', $label, '--random');
is($r->{rc}, 2, '--backup with --random: exit 2');
like($r->{stderr}, qr/--backup and --random cannot be combined/, 'and says why');
$r = pgark('drill', '--target', 'immediate');
is($r->{rc}, 2, '--target immediate: exit 2');

is(receiver_stop($rx)->{rc}, 0, 'the receiver stops cleanly');
$src->stop;
done_testing();
