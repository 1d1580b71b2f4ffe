# A backup and an expire racing (hardening issue 16, item 3), into two repositories
# (posix "one", S3 "two" on an s3rver), retention full: 1.
#
#  1. A backup B runs in another PID namespace (unshare), so the pid its running marker
#     names is no process here. It is paused (PGARK_TEST_PAUSE_BEFORE_MANIFEST) after
#     every chunk is named and stored, before its manifests: what it reuses from the
#     older backup A is decided. Table t, in A and B, is dropped and a newer backup C
#     completes, so expire expires A and, unless it sees B alive, sweeps t's chunks.
#     The outcome a user cares about: B either completes, verifies clean and restores
#     t's rows, or fails saying so and is not listed. (Before the heartbeat, expire
#     took B for dead by its pid, swept, and B completed with holes: verify exit 3.)
#  2. A backup D whose marker was not refreshed for longer than the limit (its process
#     stopped, as if suspended: no heartbeat thread beats here, and its marker in "one"
#     is aged) is taken for dead: expire sweeps in "one" the chunks D reuses, while the
#     fresh marker in "two" blocks the sweep there. D then finds the chunks gone before
#     its manifests, fails naming a chunk and its file, and no manifest is written.
#     (The chunks D stored itself are gone too: no manifest named them.)
use strict;
use warnings;

use IPC::Run;
use JSON::PP;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use PgarkTest;
use PgarkOps;

my @unshare = ('unshare', '--user', '--map-root-user', '--pid', '--fork', '--mount-proc');
# The backup's pid in its namespace is chosen through ns_last_pid (Linux 5.9 lets the
# namespace's root write it).
plan skip_all => 'unprivileged user and PID namespaces with ns_last_pid are not available (unshare)'
  unless system(@unshare, 'sh', '-c', 'echo 1000 > /proc/sys/kernel/ns_last_pid') == 0;

my $node = PostgreSQL::Test::Cluster->new('primary');
$node->init(allows_streaming => 1);
$node->append_conf('postgresql.conf', "autovacuum = off\n");
$node->start;
sub sql { return $node->safe_psql('postgres', $_[0]) }

my $tmp = PostgreSQL::Test::Utils::tempdir();
my $s3 = s3rver_start();
s3_create_bucket($s3, 'race');
my $one = "$tmp/repo1";
my $config = write_config(<<"EOF", "$tmp/pgark.yaml");
spool: $tmp/spool
log: { level: detail }
repos:
  one: { type: posix, path: $one }
  two:
    type: s3
    endpoint: $s3->{endpoint}
    allow_http: true
    bucket: race
    access_key_id: $s3->{access_key}
    secret_access_key: $s3->{secret_key}
clusters:
  main:
    conninfo: "host=@{[$node->host]} port=@{[$node->port]} dbname=postgres"
    create_slot: false
    partial_upload_interval: 0s
    repos: [one, two]
    retention: { full: 1 }
    backup: { chunk_size: 64KiB }
EOF
mkdir("$tmp/spool") or die "mkdir: $!";

sub pgark { return run_pgark([ '--config', $config, @_ ]) }

sub backup
{
	my ($label) = @_;
	my $r = pgark('backup', '--no-progress', '--json', '--label', $label);
	is($r->{rc}, 0, "backup $label exits 0") or diag($r->{stderr});
	return decode_json($r->{stdout});
}

# The chunk names of a backup's manifest in repository "one".
sub manifest_chunks
{
	my ($label) = @_;
	my $r = repo_cat($one, 'main', "backups/$label/manifest.json");
	die "cannot read the manifest of $label: $r->{stderr}" if $r->{rc};
	my @lines = split /\n/, $r->{stdout};
	shift @lines;
	my %c;
	for (@lines) { $c{$_} = 1 for @{ decode_json($_)->{chunks} // [] } }
	return \%c;
}

sub listed
{
	my ($label) = @_;
	my $r = pgark('info', '--json');
	die "info failed: $r->{stderr}" if $r->{rc};
	my $info = decode_json($r->{stdout});
	return grep { $_->{label} eq $label } map { @{ $_->{backups} // [] } } @{ $info->{repositories} };
}

# Start `pgark backup --label L`, paused before its manifests until $pause goes.
# In a PID namespace of its own (ns => 1) its pid is $ns_pid there, a pid that no
# process has here.
sub start_paused_backup
{
	my ($label, $pause, %opt) = @_;
	my @cmd = (pgark_bin(), '--config', $config, 'backup', '--no-progress', '--json', '--label', $label);
	my $user = getpwuid($<);
	if ($opt{ns})
	{
		# ns_last_pid of the new namespace: the next process there gets $opt{ns} + 1.
		@cmd = (@unshare, 'sh', '-c', 'echo $0 > /proc/sys/kernel/ns_last_pid && "$@"; exit $?',
			$opt{ns}, @cmd);
	}
	my ($out, $err) = ('', '');
	my %env = (PGARK_TEST_PAUSE_BEFORE_MANIFEST => $pause, PGUSER => $user, %{ $opt{env} // {} });
	my $h = IPC::Run::start(\@cmd, '<', \undef, '>', \$out, '2>', \$err,
		init => sub { $ENV{$_} = $env{$_} for keys %env });
	ok(poll_until(sub { -e $pause || !$h->pumpable }), "backup $label paused before its manifests")
	  or diag($err);
	return { h => $h, out => \$out, err => \$err };
}

sub finish_backup
{
	my ($b) = @_;
	eval { $b->{h}->finish };
	return $b->{h}->result(0);
}

# --- 1. the race, the backup in another PID namespace ---------------------------------

$node->command_ok([ 'pgbench', '-i', '-s', '1', '-q', 'postgres' ], 'pgbench -i -s 1');
sql("CREATE TABLE t AS SELECT g, md5(g::text) || md5((g * 7)::text) AS pad "
	  . "FROM generate_series(1, 100000) g; VACUUM FREEZE t; CHECKPOINT");
my $want_t = sql('SELECT count(*), md5(string_agg(pad, \',\' ORDER BY g)) FROM t');
backup('t1A');

# A pid for the namespace that is no process here (nor its successors).
my $pid_max = do { open(my $f, '<', '/proc/sys/kernel/pid_max') or die; my $v = <$f>; chomp $v; $v };
my $ns_last = $pid_max - 1000;
$ns_last -= 10 while grep { -e "/proc/" . ($ns_last + $_) } 1 .. 5;
my $b = start_paused_backup('t2B', "$tmp/pause-B", ns => $ns_last);
my $marker = repo_cat($one, 'main', 'backups/t2B.running');
is($marker->{rc}, 0, "B's running marker is there") or diag($marker->{stderr});
my $mpid = eval { decode_json($marker->{stdout})->{pid} } // 0;
is($mpid, $ns_last + 1, "it names B's pid in its namespace, $mpid");
ok(!kill(0, $mpid) && $!{ESRCH}, 'a pid that is no process here');

sql('DROP TABLE t; CHECKPOINT');
backup('t3C');
my ($a_chunks, $c_chunks) = (manifest_chunks('t1A'), manifest_chunks('t3C'));
my @only_a = grep { !$c_chunks->{$_} } keys %$a_chunks;
cmp_ok(scalar(@only_a), '>', 20, scalar(@only_a) . ' chunks named by A and not by C (t\'s among them)');

my $r = pgark('expire', '--json');
is($r->{rc}, 0, 'expire while B is paused exits 0') or diag($r->{stderr});
my $ex = decode_json($r->{stdout});
for my $repo (@{ $ex->{repositories} })
{
	is_deeply($repo->{expired}, ['t1A'], "repo $repo->{name}: A expired");
	like($repo->{chunks}{skipped} // '', qr/backup "t2B" is running/,
		"repo $repo->{name}: the sweep is skipped: B's marker is fresh");
}

unlink("$tmp/pause-B") or die "unlink: $!";
my $b_rc = finish_backup($b);
if ($b_rc == 0)
{
	pass('B completed');
	$r = pgark('verify', '--backup', 't2B');
	is($r->{rc}, 0, 'B verifies clean in both repositories') or diag($r->{stdout});
	my $rn = PostgreSQL::Test::Cluster->new('restored_b');
	$r = pgark('restore', '--pgdata', $rn->data_dir, '--backup', 't2B', '--repo', 'one',
		'--target', 'immediate', '--target-action', 'promote');
	is($r->{rc}, 0, 'restore of B exits 0') or diag($r->{stderr});
  SKIP:
	{
		skip 'no restored cluster to start', 2 if $r->{rc};
		$rn->append_conf('postgresql.conf', 'port = ' . $rn->port . "\n");
		$rn->start;
		ok($rn->poll_query_until('postgres', 'SELECT NOT pg_is_in_recovery()'), 'B\'s restore recovers');
		is($rn->safe_psql('postgres', 'SELECT count(*), md5(string_agg(pad, \',\' ORDER BY g)) FROM t'),
			$want_t, 'and holds t\'s rows as they were');
		$rn->stop;
	}
}
else
{
	like(${ $b->{err} }, qr/no longer in repository/, 'B failed saying chunks it names are gone');
	ok(!listed('t2B'), 'and info does not list it');
}
ok(!-e "$one/main/backups/t2B.running", 'B removed its marker');

# --- 2. a marker not refreshed past the limit ------------------------------------------

sql("CREATE TABLE u AS SELECT g, md5(g::text) || md5((g * 3)::text) AS pad "
	  . "FROM generate_series(1, 100000) g; VACUUM FREEZE u; CHECKPOINT");
backup('t4X');
# No beat after the first one within this test (an hour): D is as good as stopped.
my $d = start_paused_backup('t5D', "$tmp/pause-D", env => { PGARK_TEST_HEARTBEAT_MS => 3_600_000 });
sql('DROP TABLE u; CHECKPOINT');
backup('t6Y');
my ($x_chunks, $y_chunks) = (manifest_chunks('t4X'), manifest_chunks('t6Y'));
my @only_x = grep { !$y_chunks->{$_} } keys %$x_chunks;
cmp_ok(scalar(@only_x), '>', 20, scalar(@only_x) . ' chunks named by X and not by Y (u\'s among them)');

# D's marker in "one" as D wrote it 11 minutes ago, by its clock and the storage's.
my $old = time() - 660;
my $m = decode_json(repo_cat($one, 'main', 'backups/t5D.running')->{stdout});
ok(defined $m->{heartbeat_ms}, 'the marker carries its writer\'s heartbeat time');
$m->{heartbeat_ms} = $old * 1000;
repo_plant($one, 'main', 'backups/t5D.running', encode_json($m));
utime($old, $old, "$one/main/backups/t5D.running") or die "utime: $!";

$r = pgark('expire', '--json');
is($r->{rc}, 0, 'expire with D\'s marker aged exits 0') or diag($r->{stderr});
like($r->{stderr}, qr/backup "t5D" left a running marker not refreshed for 6[6-9]\d s \(limit 600 s\); removing it/,
	'says D\'s marker is stale, and why');
my ($e1, $e2) = map { my $n = $_; grep { $_->{name} eq $n } @{ decode_json($r->{stdout})->{repositories} } } qw(one two);
ok(!defined $e1->{chunks}{skipped}, 'repo one: the sweep ran');
my $gone = grep { !-e "$one/main/chunks/" . substr($_, 0, 2) . "/$_" } @only_x;
is($gone, scalar(@only_x), 'repo one: the chunks only X named are gone, D\'s reused ones among them');
like($e2->{chunks}{skipped} // '', qr/backup "t5D" is running/, 'repo two: D\'s fresh marker blocks the sweep');

# Repository one is dropped from D (its chunks are gone there); D completes in two, where
# the marker kept them (issue 19 item 7: one repository never stops a backup in the others).
unlink("$tmp/pause-D") or die "unlink: $!";
is(finish_backup($d), 4, 'D completes in repository two only (exit 4)');
like(${ $d->{err} },
	qr/chunk [0-9a-f]{64} of "[^"]+"(?: \(and \d+ more\))? is no longer in repository "one": removed while the backup ran/,
	'naming a chunk, its file and the repository') or diag(${ $d->{err} });
like(${ $d->{err} }, qr/pgark copy --from two --to one --backup t5D/, 'with the copy that brings it to one');
ok(!-e "$one/main/backups/t5D/manifest.json", 'no manifest.json in repo one');
is(scalar(listed('t5D')), 1, 'info lists D in one repository (two)');
# (its running marker in one stays until it is stale: a dropped repository is not written again)
$r = pgark('verify', '--backup', 't5D', '--json');
my $problems = (eval { decode_json($r->{stdout}) } // {})->{problems} // [];
is_deeply([ map { "$_->{repository}: $_->{message}" } @$problems ],
	[ 'one: backup "t5D" is not in the repository' ],
	'verify of D: whole in two (no backup with holes), absent from one') or diag($r->{stdout});

done_testing();
