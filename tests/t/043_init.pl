# pgark init on a real server: what is missing is named with the line that fixes it
# (exit 1) and nothing is half-made; on a server that is set up it creates the slot and
# every repository's repo.json (exit 0), a second run changes nothing and says so, and
# `check` then passes before any backup exists once a receiver streams (no backup yet is
# a warning).
#   - a role without REPLICATION: "ALTER ROLE ... REPLICATION";
#   - no pg_hba.conf line for replication: the line to add;
#   - wal_level = minimal, max_wal_senders = 0: the ALTER SYSTEM lines;
#   - create_slot off and no slot: the SQL that creates it.
use strict;
use warnings;

use JSON::PP;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use PgarkTest;
use PgarkOps;

my $node = PostgreSQL::Test::Cluster->new('primary');
$node->init(allows_streaming => 1, extra => ['--wal-segsize=1']);
$node->start;
sub sql { return $node->safe_psql('postgres', $_[0]) }

my $tmp = PostgreSQL::Test::Utils::tempdir();
my %root = (one => "$tmp/repo1", two => "$tmp/repo2");
my $conninfo = 'host=' . $node->host . ' port=' . $node->port;
my %cfg = (
	spool => "$tmp/spool",
	conninfo => $conninfo,
	repos => [ [ one => $root{one} ], [ two => $root{two} ] ],
	create_slot => 1);
my $config = write_config(ops_config(%cfg), "$tmp/pgark.yaml");

# Run init --json; returns (exit code, { step => entry }, run result).
sub init
{
	my ($cfgfile) = @_;
	my $r = run_pgark([ '--config', $cfgfile // $config, 'init', '--json' ]);
	my $doc = eval { decode_json($r->{stdout}) } // {};
	my %by = map { $_->{step} => $_ } @{ $doc->{steps} // [] };
	return ($r->{rc}, \%by, $r, $doc);
}

sub nothing_made
{
	my ($what) = @_;
	is(sql("SELECT count(*) FROM pg_replication_slots"), '0', "$what: no slot made");
	ok(!-e "$root{one}/main/repo.json" && !-e "$root{two}/main/repo.json",
		"$what: no repository made");
}

# --- a role without REPLICATION ---------------------------------------------------------

sql('CREATE ROLE plain LOGIN');
my $plain_cfg = write_config(ops_config(%cfg, conninfo => "$conninfo user=plain"), "$tmp/plain.yaml");
my ($rc, $by, $r) = init($plain_cfg);
is($rc, 1, 'a role without REPLICATION: exit 1') or diag($r->{stdout} . $r->{stderr});
is($by->{connection}{state}, 'missing', 'the connection step is missing');
like($by->{connection}{fix} // '', qr/^ALTER ROLE ROLE REPLICATION;/, 'the fix is the ALTER ROLE');
nothing_made('without REPLICATION');

# --- no pg_hba.conf line for replication --------------------------------------------------

my $hba = $node->data_dir . '/pg_hba.conf';
my $hba_text = slurp_file($hba);
open my $fh, '>', $hba or die "$hba: $!";
print $fh join("\n", grep { !/^\s*(local|host)\s+replication\b/ } split /\n/, $hba_text), "\n";
close $fh;
$node->reload;
ok(poll_until(sub { my (undef, $b) = init(); ($b->{connection}{state} // '') eq 'missing' }),
	'without a replication line in pg_hba.conf init fails to connect');
($rc, $by, $r) = init();
is($rc, 1, 'no pg_hba.conf line: exit 1');
like($by->{connection}{message}, qr/pg_hba\.conf/, 'the server\'s words are shown');
like($by->{connection}{fix} // '', qr/add a line for the replication pseudo-database to pg_hba\.conf, e\.g\. "host replication ROLE ADDRESS\/32 scram-sha-256"/,
	'the fix names the line to add');
like($r->{stdout}, qr/"ready": false/, '--json says it is not ready');
nothing_made('without a pg_hba.conf line');
open $fh, '>', $hba or die "$hba: $!";
print $fh $hba_text;
close $fh;
$node->reload;

# --- the settings ----------------------------------------------------------------------

# One WAL sender (the receiver's, none left for a backup) and no slots at all.
sql("ALTER SYSTEM SET max_wal_senders = 1");
sql("ALTER SYSTEM SET max_replication_slots = 0");
$node->restart;
($rc, $by, $r) = init();
is($rc, 1, 'max_wal_senders = 1, max_replication_slots = 0: exit 1') or diag($r->{stdout});
is($by->{max_wal_senders}{state}, 'missing', 'one WAL sender is not enough');
is($by->{max_wal_senders}{fix}, 'ALTER SYSTEM SET max_wal_senders = 10; then restart the server',
	'with the ALTER SYSTEM that fixes it');
is($by->{max_replication_slots}{state}, 'missing', 'no slots is not enough');
is($by->{max_replication_slots}{fix},
	'ALTER SYSTEM SET max_replication_slots = 10; then restart the server', 'with its fix');
is(sql("SELECT count(*) FROM pg_replication_slots"), '0', 'no slot made');
is($by->{'repository:one'}{state}, 'done', 'what can be made is made: the repositories');
system('rm', '-rf', "$root{one}/main", "$root{two}/main") == 0 or die "rm: $?";

# wal_level = minimal (which needs max_wal_senders = 0): no replication connection at all.
sql("ALTER SYSTEM SET wal_level = minimal");
sql("ALTER SYSTEM SET max_wal_senders = 0");
$node->restart;
($rc, $by, $r) = init();
is($rc, 1, 'wal_level = minimal: exit 1');
is($by->{connection}{state}, 'missing', 'no replication connection');
is($by->{connection}{fix},
	'ALTER SYSTEM SET wal_level = replica; ALTER SYSTEM SET max_wal_senders = 10; then restart the server',
	'the fix sets both');
sql("ALTER SYSTEM RESET wal_level");
sql("ALTER SYSTEM RESET max_wal_senders");
sql("ALTER SYSTEM RESET max_replication_slots");
$node->restart;

# --- create_slot off: the SQL --------------------------------------------------------------

my $noslot_cfg = write_config(ops_config(%cfg, create_slot => 0), "$tmp/noslot.yaml");
($rc, $by, $r) = init($noslot_cfg);
is($rc, 1, 'create_slot off and no slot: exit 1');
is($by->{slot}{fix},
	"SELECT pg_create_physical_replication_slot('pgark_main', true); (or set create_slot: true and run pgark init again)",
	'the fix is the SQL that creates the slot');
is($by->{'repository:one'}{state}, 'done', 'the repositories are made all the same');
is(sql("SELECT count(*) FROM pg_replication_slots"), '0', 'but no slot');
system('rm', '-rf', "$root{one}/main", "$root{two}/main") == 0 or die "rm: $?";

# --- all set: init makes the slot and the repositories, then changes nothing ---------------

($rc, $by, $r) = init();
is($rc, 0, 'a server that is set up: exit 0') or diag($r->{stdout} . $r->{stderr});
is($by->{slot}{state}, 'done', 'the slot is created');
is(sql("SELECT slot_type || ' ' || (restart_lsn IS NOT NULL) FROM pg_replication_slots WHERE slot_name = 'pgark_main'"),
	'physical true', 'a physical slot that reserves WAL');
for my $repo (qw(one two))
{
	is($by->{"repository:$repo"}{state}, 'done', "repository $repo is created");
	ok(-f "$root{$repo}/main/repo.json", "$repo: repo.json is there");
}
my $sysid = sql('SELECT system_identifier FROM pg_control_system()');
like($by->{'repository:one'}{message}, qr/\(system $sysid\)/, 'bound to the server\'s system');
my $before = slurp_file("$root{one}/main/repo.json");

($rc, $by, $r) = init();
is($rc, 0, 'again: exit 0');
is_deeply([ sort map { $_->{state} } values %$by ], [ ('ready') x scalar(keys %$by) ],
	'every step already done: nothing made twice');
is(slurp_file("$root{one}/main/repo.json"), $before, 'repo.json untouched');
$r = run_pgark([ '--config', $config, 'init' ]);
like($r->{stdout}, qr/^ready\s+replication slot "pgark_main" exists$/m, 'the text form lists the steps');
like($r->{stdout}, qr/^ready: start pgark receive, then take the first backup with pgark backup$/m,
	'and says what comes next');

# --- check passes before any backup, once a receiver streams -----------------------------

my $rx = ops_receiver_start($config);
ok(poll_until(sub { sql("SELECT count(*) FROM pg_replication_slots WHERE active") eq '1' }),
	'the receiver streams');
sql('CREATE TABLE t AS SELECT g FROM generate_series(1, 10000) g');
sql('SELECT pg_switch_wal()');
ok(poll_until(sub { -f "$tmp/spool/main/status.json" }), 'the receiver writes its status');
my $c;
ok(poll_until(sub { $c = run_pgark([ '--config', $config, 'check' ]); $c->{rc} == 0 }),
	'check passes before any backup') or diag($c->{stdout});
like($c->{stdout}, qr/^warn\s+backups:one\s+repository "one" holds no backup yet/m,
	'no backup yet is a warning');
is(ops_receiver_stop($rx), 0, 'the receiver stops');

done_testing();
