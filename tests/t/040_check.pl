# pgark check against a real server and posix repositories filled by `pgark receive`:
# all good is exit 0 with one --json entry per check; each thing that can go wrong —
# no slot, the slot unused while a receiver should stream, a repository not writable,
# WAL older than rpo_target, another system's repository, the server down, a bad
# configuration — is exit 3 with the failing check saying what is wrong. A TCP conninfo
# without sslmode=verify-full and secrets others can read are warnings (exit 0 for
# them); with require_tls: true such a conninfo fails check and every command that
# connects refuses it (exit 2). One RPO: check, info and report say the receiver's
# figure (status.json) as of their moment, the receiver running and stopped.
use strict;
use warnings;

use JSON::PP;
use Time::HiRes ();
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
ok(poll_until(sub { sql("SELECT count(*) FROM pg_replication_slots WHERE active") eq '1' }),
	'receiver streams');
sql('CREATE TABLE t AS SELECT g FROM generate_series(1, 10000) g');
my $seg = sql('SELECT pg_walfile_name(pg_current_wal_lsn())');
sql('SELECT pg_switch_wal()');
ok(poll_until(sub { -f "$root{one}/main/wal/00000001/$seg" && -f "$root{two}/main/wal/00000001/$seg" }),
	"both repositories hold $seg");
# status.json is written about once a second.
ok(poll_until(sub { -f "$tmp/spool/main/status.json" }), 'the receiver writes its status');

my $r;
($rc, $by, $doc, $r) = check();
is($rc, 0, 'all good: exit 0') or diag($r->{stdout});
ok($doc->{ok}, 'ok is true');
is_deeply(
	[ map { $_->{name} } @{ $doc->{checks} } ],
	[
		qw(config connection slot slot_active repository:one system_identifier:one backups:one
		  rpo:one repository:two system_identifier:two backups:two rpo:two)
	],
	'one entry per check, in order');
is_deeply(failed($by), [], 'every check ok');
ok($by->{'backups:one'}{warning}, 'no backup yet: a warning, not a failure');
like($by->{'backups:one'}{detail}, qr/repository "one" holds no backup yet \(hint: take one with pgark backup\)/,
	'saying what to do');
ok(!grep({ !defined $_->{detail} || $_->{detail} eq '' } @{ $doc->{checks} }), 'each has a detail');
like($by->{slot_active}{detail}, qr/is in use by process \d+/, 'slot in use by the receiver');
like($by->{'rpo:one'}{detail}, qr/^a restore to latest from repository "one" would lose .* of commits \(RPO, from the receiver's status; rpo_target 1h\)$/,
	'RPO from the receiver\'s status');
my @probes = glob("$root{one}/main/.pgark-check-* $root{two}/main/.pgark-check-*");
is_deeply(\@probes, [], 'the write probes are removed');

# Text form.
$r = run_pgark([ '--config', $config, 'check' ]);
is($r->{rc}, 0, 'text form exits 0');
like($r->{stdout}, qr/^ok\s+slot\s+replication slot "pgark_main" exists/m, 'text lists checks');
like($r->{stdout}, qr/all 12 checks passed, 2 with a warning/, 'and sums up');

# --- one RPO: check, info and report say the receiver's figure as of their moment -------

# Commit A reaches both repositories; commit B, seconds later, stays in the segment being
# filled (no partial copies here): a restore from either would lose B, so the RPO is the
# time from A to B, and stays that while the receiver runs. The lag (how long the oldest
# byte a repository lacks has been in the spool) grows meanwhile: once it is 2 s past
# the RPO, a command reporting the lag instead says something else.
sql('INSERT INTO t SELECT 1');
$seg = sql('SELECT pg_walfile_name(pg_current_wal_lsn())');
sql('SELECT pg_switch_wal()');
ok(poll_until(sub { -f "$root{one}/main/wal/00000001/$seg" && -f "$root{two}/main/wal/00000001/$seg" }),
	"commit A in $seg, in both repositories");
Time::HiRes::sleep(2.5);    # B is this much newer than A: the RPO
sql('INSERT INTO t SELECT 2');
sub repo_status
{
	my ($st, $name) = @_;
	return (grep { $_->{name} eq $name } @{ $st->{repos} // [] })[0];
}
my $st;
ok( poll_until(
		sub {
			$st = read_status("$tmp/spool/main") or return 0;
			my $one = repo_status($st, 'one') or return 0;
			return ($one->{rpo_seconds} // 0) > 2 && $one->{lag_seconds} > $one->{rpo_seconds} + 2;
		}),
	'the receiver says RPO ~2.5 s, and a lag 2 s more');
my $v = repo_status($st, 'one')->{rpo_seconds};
note("status.json: rpo of one $v s, lag " . repo_status($st, 'one')->{lag_seconds} . ' s');

# What each command says, and the moments it ran between.
sub rpo_views
{
	my %f;
	my $t0 = Time::HiRes::time();
	my (undef, $c) = check();
	$f{check} = [ $t0, Time::HiRes::time(), $c->{'rpo:one'}{rpo_seconds} ];
	$t0 = Time::HiRes::time();
	my $i = decode_json(run_pgark([ '--config', $config, 'info', '--json' ])->{stdout});
	$f{info_repo} = [ $t0, Time::HiRes::time(), repo_status($i->{receiver}, 'one')->{rpo_seconds} ];
	$f{info_tier} = [ $t0, Time::HiRes::time(), $i->{receiver}{rpo}{local}{seconds} ];
	$t0 = Time::HiRes::time();
	my $rp = decode_json(run_pgark([ '--config', $config, 'report', '--json' ])->{stdout});
	$f{report} = [ $t0, Time::HiRes::time(), $rp->{clusters}[0]{receiver}{rpo}{local} ];
	return \%f;
}
my $views = rpo_views();
for my $k (sort keys %$views)
{
	my ($from, $to, $f) = @{ $views->{$k} };
	# Running: the figure, plus at most the age of a file rewritten every second.
	ok(defined $f && $f >= $v - 0.001 && $f <= $v + 1.5 + ($to - $from),
		sprintf('receiver running: %s says RPO %s s, status.json %.3f s', $k, $f // 'none', $v));
}

# Stopped: the file no longer changes, and every command adds its age to it.
is(ops_receiver_stop($rx), 0, 'receiver stopped');
$st = read_status("$tmp/spool/main");
$v = repo_status($st, 'one')->{rpo_seconds};
my $updated = `date -d '$st->{updated}' +%s.%N` + 0;
$views = rpo_views();
for my $k (sort keys %$views)
{
	my ($from, $to, $f) = @{ $views->{$k} };
	ok(defined $f && $f >= $v + ($from - $updated) - 0.01 && $f <= $v + ($to - $updated) + 0.01,
		sprintf('receiver stopped: %s says RPO %s s = status.json %.3f s + the %.2f-%.2f s since it was written',
			$k, $f // 'none', $v, $from - $updated, $to - $updated));
}

# --- the receiver stops: the slot is no longer used ---------------------------------

ok(poll_until(sub { sql("SELECT count(*) FROM pg_replication_slots WHERE active") eq '0' }),
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
ok( poll_until(
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
	qr/^a restore to latest from repository "one" would lose .* of commits \(RPO, from the receiver's status, which stopped: grown by the time since; rpo_target 1s\)$/,
	'the receiver\'s last figure, grown since it stopped, and the target');

# Without the receiver's status, the newest segment's age bounds the RPO.
rename("$tmp/spool/main/status.json", "$tmp/status.json.aside") or die "rename: $!";
($rc, $by) = check($tight);
rename("$tmp/status.json.aside", "$tmp/spool/main/status.json") or die "rename: $!";
is($rc, 3, 'no status file, stale WAL: exit 3');
like($by->{'rpo:one'}{detail},
	qr/newest WAL segment in repository "one" was archived .* ago \(rpo_target 1s; no receiver is running\)/,
	'saying how old the newest segment is and the target');

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

# --- transport and file modes -----------------------------------------------------------

# Nothing listens on this port: what counts is how pgark judges the conninfo.
my $tcp_port = free_tcp_port();
my $tcp = "host=127.0.0.1 port=$tcp_port connect_timeout=2";
my $tcp_cfg = write_config(ops_config(%cfg, conninfo => $tcp), "$tmp/pgark-tcp.yaml");
($rc, $by, $doc, $r) = check($tcp_cfg);
ok($by->{tls} && $by->{tls}{ok} && $by->{tls}{warning}, 'TCP without sslmode: tls is a warning');
like($by->{tls}{detail},
	qr/^cluster "main" connects to "127\.0\.0\.1" over TCP with sslmode "prefer" \(libpq's default: nothing sets it\), which does not authenticate the server/,
	'naming the host and the sslmode found');
like($by->{tls}{detail}, qr/hint: add sslmode=verify-full/, 'with the fix');
ok(exists $by->{connection}, 'and the connection is still tried');
ok(!$by->{config}{warning}, 'a passing check is no warning');

# sslmode=require encrypts but authenticates nobody either; verify-full passes.
my $req_cfg = write_config(ops_config(%cfg, conninfo => "$tcp sslmode=require"),
	"$tmp/pgark-require.yaml");
($rc, $by) = check($req_cfg);
ok($by->{tls}{warning}, 'sslmode=require: still a warning');
like($by->{tls}{detail}, qr/with sslmode "require", which/, 'saying require');
my $vf_cfg = write_config(ops_config(%cfg, conninfo => "$tcp sslmode=verify-full"),
	"$tmp/pgark-vf.yaml");
($rc, $by) = check($vf_cfg);
ok($by->{tls}{ok} && !$by->{tls}{warning}, 'sslmode=verify-full: tls ok, no warning');

# PGSSLMODE counts like the conninfo's own setting.
$r = run_pgark([ '--config', $tcp_cfg, 'check', '--json' ],
	env => { PGPASSFILE => '/nonexistent', PGSSLMODE => 'verify-full' });
my %env_by = map { $_->{name} => $_ } @{ (eval { decode_json($r->{stdout}) } // {})->{checks} // [] };
ok($env_by{tls}{ok} && !$env_by{tls}{warning}, 'PGSSLMODE=verify-full: no warning');

# require_tls: check fails without connecting; receive and backup refuse with exit 2.
my $strict = write_config("require_tls: true\n" . ops_config(%cfg, conninfo => $tcp),
	"$tmp/pgark-strict.yaml");
($rc, $by, $doc) = check($strict);
is($rc, 3, 'require_tls with a weak TCP conninfo: check exits 3');
ok(!$by->{tls}{ok}, 'the tls check fails');
like($by->{tls}{detail},
	qr/^not connecting: cluster "main" connects to "127\.0\.0\.1" over TCP with sslmode "prefer" .*require_tls refuses anything weaker than verify-full/,
	'saying why');
ok(!exists $by->{connection}, 'no connection is attempted');
ok(exists $by->{'repository:one'}, 'the repositories are still checked');
for my $cmd ([ 'backup', '--no-progress' ], ['receive'])
{
	$r = run_pgark([ '--config', $strict, @$cmd ], timeout => 60);
	is($r->{rc}, 2, "require_tls: $cmd->[0] exits 2");
	like($r->{stderr},
		qr/error\s+cluster "main" connects to "127\.0\.0\.1" over TCP with sslmode "prefer" \(libpq's default: nothing sets it\), which does not authenticate the server; require_tls refuses anything weaker than verify-full/,
		"$cmd->[0]: naming the cluster and the sslmode");
	like($r->{stderr}, qr/hint: add sslmode=verify-full .* or connect through a Unix socket/,
		"$cmd->[0]: with a hint");
}
# A Unix socket needs no TLS, and verify-full is enough.
my $strict_sock = write_config("require_tls: true\n" . ops_config(%cfg), "$tmp/pgark-strict-sock.yaml");
($rc, $by, $doc) = check($strict_sock);
ok(!exists $by->{tls}, 'require_tls with a Unix socket: no tls check');
ok(exists $by->{connection}, 'and the connection is tried (the server is down by now)');
my $strict_vf = write_config("require_tls: true\n" . ops_config(%cfg, conninfo => "$tcp sslmode=verify-full"),
	"$tmp/pgark-strict-vf.yaml");
($rc, $by) = check($strict_vf);
ok($by->{tls}{ok}, 'require_tls with verify-full: tls ok');
ok(exists $by->{connection}, 'and the connection is tried');

# A configuration file other users can read: a warning naming it and the fix, in check's
# report (not as a log line) and in the log of other commands; exit code unchanged.
my $open_cfg = write_config(ops_config(%cfg), "$tmp/pgark-open.yaml");
chmod(0644, $open_cfg) or die "chmod: $!";
($rc, $by, $doc, $r) = check($open_cfg);
my ($perm) = grep { $_->{name} =~ /^permissions:/ } @{ $doc->{checks} };
ok($perm && $perm->{ok} && $perm->{warning}, 'a world-readable configuration: a warning entry');
is($perm->{detail},
	qq{configuration file "$open_cfg" is readable by other users (mode 0644) (hint: chmod 600 "$open_cfg")},
	'naming the file, its mode and the fix');
is($r->{stderr} =~ /readable by other users/ ? 1 : 0, 0, 'check does not log it as well');
$r = run_pgark([ '--config', $open_cfg, 'check' ]);
like($r->{stdout}, qr/^warn\s+permissions:1\s+configuration file/m, 'text form: "warn"');
like($r->{stdout}, qr/checks (passed|failed), 3 with a warning$/m,
	'and counted (with the two repositories that hold no backup yet)');
$r = run_pgark([ '--config', $open_cfg, 'info' ]);
like($r->{stderr}, qr/warn\s+configuration file "\Q$open_cfg\E" is readable by other users \(mode 0644\)\n.*warn\s+hint: chmod 600 "\Q$open_cfg\E"/,
	'other commands log it as a warning with its hint');
is(() = $r->{stderr} =~ /readable by other users/g, 1, 'once');
# wal-fetch runs once per segment: only at detail level (the file says detail, hence
# --log-level info).
$r = run_pgark([ '--config', $open_cfg, '--log-level', 'info', 'wal-fetch',
	'0000000100000000000000F0', "$tmp/RECOVERYXLOG" ]);
is($r->{rc}, 1, 'wal-fetch of a segment nobody has: exit 1');
is($r->{stderr} =~ /readable by other users/ ? 1 : 0, 0, 'wal-fetch: no warning at info level');
$r = run_pgark([ '--config', $open_cfg, '--log-level', 'detail', 'wal-fetch', '0000000100000000000000F0',
	"$tmp/RECOVERYXLOG" ]);
like($r->{stderr}, qr/detail\s+configuration file "\Q$open_cfg\E" is readable by other users/,
	'wal-fetch: at detail level');

done_testing();
