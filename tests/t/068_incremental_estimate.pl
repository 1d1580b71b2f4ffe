# Incremental or full, judged from the server's WAL summaries (issue 24 item 5), on
# PostgreSQL 17 (skipped unless 17 is in PGARK_TEST_MAJORS):
#
#  - after a contiguous update of 5% of a table that is most of the cluster, the backup is
#    incremental, and --json says what the summaries showed (few ranges changed);
#  - after an update spread over every page of that table, the backup is a full one, and
#    says why at info level and in --json: the share of 1 MiB ranges changed, above 20%;
#  - when the summaries cannot be asked (a role that may replicate but not connect to a
#    database), the backup says so and is incremental as before, never failing for it;
#  - the summaries and the configuration record are read on one SQL session.
use strict;
use warnings;

use JSON::PP;
use POSIX ();
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use PgarkMajors;
use PgarkTest;

plan skip_all => 'PostgreSQL 17 is not in PGARK_TEST_MAJORS' unless major_selected(17);

my $install = pg_install_path(17);
my $tmp = PostgreSQL::Test::Utils::tempdir();

my $pg = PostgreSQL::Test::Cluster->new('estimate17', install_path => $install);
$pg->init(allows_streaming => 1);
$pg->append_conf('postgresql.conf', "summarize_wal = on\nautovacuum = off\nlog_connections = on\n");
$pg->start;
my $sql = sub { $pg->safe_psql('postgres', $_[0]) };
my $h = $pg->host;

my %cfg = (
	spool => "$tmp/spool",
	repos => [ [ local => "$tmp/repo" ] ],
	conninfo => "host=$h port=" . $pg->port . ' dbname=postgres',
	extra => "    pg_bindir: $install/bin\n");
my $config = write_config(receiver_config(%cfg), "$tmp/pgark.yaml");
# The same cluster through a role that may replicate but not connect to a database.
$sql->('CREATE ROLE rep LOGIN REPLICATION');
$sql->('REVOKE CONNECT ON DATABASE postgres FROM PUBLIC');
my $config_rep = write_config(
	receiver_config(%cfg, conninfo => "host=$h port=" . $pg->port . ' user=rep dbname=postgres'),
	"$tmp/pgark-rep.yaml");

# About 80 MiB: most of the cluster's ranges are this table's.
$sql->('CREATE TABLE big (id int, v text)');
$sql->("INSERT INTO big SELECT g, repeat('x', 100) FROM generate_series(1, 600000) g");
# Hint bits set now: with data checksums a later scan setting them would log every page.
$sql->('VACUUM FREEZE big');
my $rows = 600000;

my $n = 0;
my $backup = sub {
	my ($conf, @args) = @_;
	my $r = run_pgark([ '--config', $conf, 'backup', '--no-progress', '--json', '--label',
		sprintf('e%02d', ++$n), @args ]);
	my $j = eval { decode_json($r->{stdout}) } // {};
	return ($r, $j);
};
# The summaries cover what changed so far: a checkpoint ends one, and the summarizer
# has written it (the estimate sees summarized WAL only).
my $summarized = sub {
	$sql->('CHECKPOINT');
	my $redo = $sql->('SELECT redo_lsn FROM pg_control_checkpoint()');
	ok(poll_until(sub { $sql->("SELECT summarized_lsn >= '$redo' FROM pg_get_wal_summarizer_state()") eq 't' }, 120),
		"the WAL summaries reach $redo");
};

my ($r, $b1) = $backup->($config);
is($r->{rc}, 0, 'first backup') or diag($r->{stderr});
ok(!$b1->{incremental}, 'full: no parent');
is($b1->{estimate}, undef, 'nothing estimated without a parent');
wait_past_stop_time($b1->{stop_time});

# --- contiguous: incremental --------------------------------------------------------

$sql->('UPDATE big SET v = v WHERE id <= ' . ($rows / 20));
$summarized->();
my $log_at = -s $pg->logfile;
($r, my $b2) = $backup->($config);
is($r->{rc}, 0, 'backup after a contiguous update') or diag($r->{stderr});
# One normal session besides the replication connection: the summaries' question and the
# configuration record share it (a backend's start is most of what either costs the server).
my @sessions = substr(slurp_file($pg->logfile), $log_at)
	=~ /(?<!replication )connection authorized: user=\S+ database=postgres application_name=pgark_backup/g;
is(scalar @sessions, 1, 'the backup opened one SQL session besides its replication connection');
ok(-f "$tmp/repo/main/configs/$b2->{label}.json", 'and kept its configuration record, read on it');
ok($b2->{incremental}, 'incremental') or diag($b2->{reason});
is($b2->{parent}, $b1->{label}, 'to the first');
my $e2 = $b2->{estimate} // {};
is($e2->{against}, $b1->{label}, 'the summaries were asked about the changes since it');
cmp_ok($e2->{changed_ranges}, '>', 0, "they show changed ranges ($e2->{changed_ranges})");
cmp_ok($e2->{changed_ranges}, '<', $e2->{ranges} / 4,
	"few of the parent's ($e2->{changed_ranges} of $e2->{ranges})");
cmp_ok($e2->{changed_blocks}, '>', 0, "and changed blocks ($e2->{changed_blocks}; the server sent $b2->{changed_blocks})");
wait_past_stop_time($b2->{stop_time});

# --- spread over every page: full ------------------------------------------------------

$sql->('UPDATE big SET v = v WHERE id % 50 = 0');
$summarized->();
($r, my $b3) = $backup->($config);
is($r->{rc}, 0, 'backup after an update spread over the table') or diag($r->{stderr});
ok(!$b3->{incremental}, 'full');
like(
	$b3->{reason} // '',
	qr/^the WAL summaries show (\d+)% of the 1024 KiB ranges of backup "\Q$b2->{label}\E" changed \(\d+ of \d+; \d+% of the blocks\), above 20%: a full backup costs less than an incremental one$/,
	'saying why');
like($r->{stderr}, qr/info +backup "\Q$b3->{label}\E" is a full backup: the WAL summaries show \d+% of the 1024 KiB ranges/,
	'at info level');
my $e3 = $b3->{estimate} // {};
is($e3->{against}, $b2->{label}, '--json gives the estimate against the candidate parent');
cmp_ok($e3->{changed_ranges}, '>', $e3->{ranges} / 2, "most ranges changed ($e3->{changed_ranges} of $e3->{ranges})");
is($b3->{changed_blocks}, 0, 'the server sent whole files');
wait_past_stop_time($b3->{stop_time});

# --- the summaries cannot be asked: as before ------------------------------------------

$sql->('UPDATE big SET v = v WHERE id % 50 = 1');
$summarized->();
($r, my $b4) = $backup->($config_rep);
is($r->{rc}, 0, 'backup by a role that cannot run SQL') or diag($r->{stderr});
like($r->{stderr}, qr/info +could not ask the server's WAL summaries what changed since backup "\Q$b3->{label}\E" \(.*\): the backup is incremental without that estimate/,
	'says it could not estimate');
ok($b4->{incremental}, 'and is incremental, as without the estimate');
is($b4->{parent}, $b3->{label}, 'to the full one');
is($b4->{estimate}, undef, 'no estimate in --json');

# Each restores alone, with the rows the source has now.
my $want = $sql->("SELECT count(*) || ':' || sum(length(v)) FROM big");
my $node = PostgreSQL::Test::Cluster->new('estimate17_r', install_path => $install);
$r = run_pgark([ '--config', $config, 'restore', '--pgdata', $node->data_dir, '--backup', $b4->{label},
	'--target', 'immediate', '--target-action', 'promote', '--start', '--wait', '--port', $node->port ]);
is($r->{rc}, 0, 'the last incremental restores') or diag($r->{stderr});
$node->_update_pid(-1);
is($node->safe_psql('postgres', "SELECT count(*) || ':' || sum(length(v)) FROM big"), $want,
	'with the rows of the source');
$node->stop;

$pg->stop;
done_testing();
