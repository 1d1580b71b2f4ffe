# pgark check against a real server and posix repositories filled by `pgark receive`:
# all good is exit 0 with one --json entry per check; each thing that can go wrong —
# no slot, the slot unused while a receiver should stream, a repository not writable,
# WAL older than rpo_target, another system's repository, the server down, a bad
# configuration — is exit 3 with the failing check saying what is wrong.
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
my $config = write_config(ops_config(%cfg, rpo_target => '1h'), "$tmp/pgark.yaml");

# Run check --json; returns (exit code, { name => entry }, document).
sub check
{
	my ($cfgfile) = @_;
	my $r = run_pgark([ '--config', $cfgfile // $config, 'check', '--json' ],
		env => { PGPASSFILE => '/nonexistent' });
	my $doc = eval { decode_json($r->{stdout}) } // {};
	my %by = map { $_->{name} => $_ } @{ $doc->{checks} // [] };
	return ($r->{rc}, \%by, $doc, $r);
}

sub failed { my ($by) = @_; return [ sort grep { !$by->{$_}{ok} } keys %$by ] }

# --- before any receiver ran: no slot, no repositories --------------------------------

my ($rc, $by, $doc) = check();
is($rc, 3, 'check without slot and repositories exits 3');
ok(!$by->{slot}{ok}, 'slot check fails');
like($by->{slot}{detail}, qr/replication slot "pgark_main" does not exist/, 'saying the slot is missing');
ok(!$by->{'repository:one'}{ok}, 'a repository that was never created fails');
ok($by->{config}{ok} && $by->{connection}{ok}, 'config and connection pass');
ok(!$doc->{ok}, 'ok is false');

# --- a receiver fills the repositories: all good ------------------------------------

my $rx = ops_receiver_start($config);
ok(wait_for(sub { sql("SELECT count(*) FROM pg_replication_slots WHERE active") eq '1' }),
	'receiver streams');
sql('CREATE TABLE t AS SELECT g FROM generate_series(1, 10000) g');
my $seg = sql('SELECT pg_walfile_name(pg_current_wal_lsn())');
sql('SELECT pg_switch_wal()');
ok(wait_for(sub { -f "$root{one}/main/wal/00000001/$seg" && -f "$root{two}/main/wal/00000001/$seg" }),
	"both repositories hold $seg");
# status.json is written about once a second.
ok(wait_for(sub { -f "$tmp/spool/main/status.json" }), 'the receiver writes its status');

my $r;
($rc, $by, $doc, $r) = check();
is($rc, 0, 'all good: exit 0') or diag($r->{stdout});
ok($doc->{ok}, 'ok is true');
is_deeply(
	[ map { $_->{name} } @{ $doc->{checks} } ],
	[
		qw(config connection slot slot_active repository:one system_identifier:one rpo:one
		  repository:two system_identifier:two rpo:two)
	],
	'one entry per check, in order');
is_deeply(failed($by), [], 'every check ok');
ok(!grep({ !defined $_->{detail} || $_->{detail} eq '' } @{ $doc->{checks} }), 'each has a detail');
like($by->{slot_active}{detail}, qr/is in use by process \d+/, 'slot in use by the receiver');
like($by->{'rpo:one'}{detail}, qr/behind the receiver's spool/, 'RPO from the receiver\'s status');
my @probes = glob("$root{one}/main/.pgark-check-* $root{two}/main/.pgark-check-*");
is_deeply(\@probes, [], 'the write probes are removed');

# Text form.
$r = run_pgark([ '--config', $config, 'check' ]);
is($r->{rc}, 0, 'text form exits 0');
like($r->{stdout}, qr/^ok\s+slot\s+replication slot "pgark_main" exists/m, 'text lists checks');
like($r->{stdout}, qr/all 10 checks passed/, 'and sums up');

# --- the receiver stops: the slot is no longer used ---------------------------------

is(ops_receiver_stop($rx), 0, 'receiver stopped');
ok(wait_for(sub { sql("SELECT count(*) FROM pg_replication_slots WHERE active") eq '0' }),
	'slot released');
($rc, $by) = check();
is($rc, 3, 'slot unused while a receiver should stream: exit 3');
is_deeply(failed($by), ['slot_active'], 'only slot_active fails');
like($by->{slot_active}{detail}, qr/"pgark_main" is not in use: the receiver is not streaming/,
	'saying the receiver is not streaming');

# --- a repository that cannot be written --------------------------------------------

chmod(0000, $root{two}) or die "chmod: $!";
($rc, $by) = check();
chmod(0700, $root{two}) or die "chmod: $!";
is($rc, 3, 'unwritable repository: exit 3');
ok(!$by->{'repository:two'}{ok}, 'repository:two fails');
like($by->{'repository:two'}{detail}, qr/repository "two"/, 'naming it');
like($by->{'repository:two'}{detail}, qr/[Pp]ermission denied/, 'with the reason');
ok($by->{'repository:one'}{ok}, 'repository one still ok');

# --- WAL older than rpo_target with no receiver -----------------------------------------

my $tight = write_config(ops_config(%cfg, rpo_target => '1s'), "$tmp/pgark-tight.yaml");
ok( wait_for(
		sub {
			my ($c, $b) = check($tight);
			$rc = $c;
			$by = $b;
			return $b->{'rpo:one'} && !$b->{'rpo:one'}{ok};
		},
		30),
	'rpo:one fails once the newest segment is older than 1s');
is($rc, 3, 'stale WAL: exit 3');
like($by->{'rpo:one'}{detail},
	qr/newest WAL segment in repository "one" was archived .* ago \(rpo_target 1s; no receiver is running\)/,
	'saying how old and the target');

# --- the slot is dropped --------------------------------------------------------------

sql("SELECT pg_drop_replication_slot('pgark_main')");
($rc, $by) = check();
is($rc, 3, 'slot missing: exit 3');
ok(!$by->{slot}{ok}, 'slot check fails');
ok(!exists $by->{slot_active}, 'and its use is not judged');

# --- another system's repositories ------------------------------------------------------

my $other = PostgreSQL::Test::Cluster->new('other');
$other->init(allows_streaming => 1, extra => ['--wal-segsize=1']);
$other->start;
my $foreign = write_config(
	ops_config(%cfg, conninfo => 'host=' . $other->host . ' port=' . $other->port),
	"$tmp/pgark-other.yaml");
($rc, $by) = check($foreign);
is($rc, 3, 'repositories of another system: exit 3');
ok(!$by->{'system_identifier:one'}{ok}, 'system_identifier:one fails');
like($by->{'system_identifier:one'}{detail},
	qr/repository "one" belongs to system \d+, not to the server's \d+/, 'naming both systems');
$other->stop;

# --- the server is down ---------------------------------------------------------------

$node->stop;
($rc, $by, $doc, $r) = check();
is($rc, 3, 'server down: exit 3, not a crash');
ok(!$by->{connection}{ok}, 'connection fails');
like($by->{connection}{detail}, qr/No such file or directory|could not connect|connection/,
	'with libpq\'s reason');
ok(exists $by->{'repository:one'}, 'repositories are still checked');
is($r->{stderr} =~ /panic|segmentation|abort/i ? 1 : 0, 0, 'nothing crashed');

# --- a configuration that does not load ------------------------------------------------

my $bad = write_config("spool: $tmp/spool\nrepos: {}\nclusters:\n  main:\n    slto: x\n",
	"$tmp/pgark-bad.yaml");
($rc, $by, $doc) = check($bad);
is($rc, 3, 'bad configuration: exit 3');
is_deeply([ map { $_->{name} } @{ $doc->{checks} } ], ['config'], 'only the config check');
like($by->{config}{detail}, qr/pgark-bad\.yaml:\d+:\d+:/, 'naming file, line and column');

done_testing();
