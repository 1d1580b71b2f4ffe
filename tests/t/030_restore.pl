# pgark restore and wal-fetch against a real workload: a table where every
# transaction inserts one row, with track_commit_timestamp = on so that the commit time
# of each row is known. After a restore to a time, an xid, an LSN, a restore point,
# "immediate" or "latest", the rows in the restored cluster must be exactly those whose
# transactions committed at or before the target (strictly before for an exclusive
# target). Refusals (a non-empty directory, a running server, a target outside the
# restorable window) must exit 2 and leave the directory untouched. wal-fetch: a missing
# segment is exit 1 with nothing written; a damaged object, a repository that cannot be
# opened or a broken configuration exit 255 (the server stops instead of ending recovery
# early) with an error naming the repository and the segment; history files are served.
#
# WAL reaches the repository through archive_command = pgark wal-push; the base backup
# is taken by `pgark backup`, which archives the backup's own WAL too (the same
# segments the archiver pushes: both must agree).
use strict;
use warnings;

use File::Path qw(make_path rmtree);
use JSON::PP;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use PgarkTest;

my $pgark = pgark_bin();
my $tmp = PostgreSQL::Test::Utils::tempdir();
my $repo = "$tmp/repo";
my $src = PostgreSQL::Test::Cluster->new('src');
my $config = write_config(<<"EOF", "$tmp/pgark.yaml");
spool: $tmp/spool
repos:
  local: { type: posix, path: $repo }
clusters:
  main:
    conninfo: "host=@{[$src->host]} port=@{[$src->port]} dbname=postgres"
    repos: [local]
    backup: { chunk_size: 256KiB }
EOF

$src->init(allows_streaming => 1, extra => ['--data-checksums']);
$src->append_conf('postgresql.conf', <<"EOF");
track_commit_timestamp = on
archive_mode = on
archive_command = '"$pgark" --config "$config" wal-push "%p"'
EOF
$src->start;

sub sql { return $src->safe_psql('postgres', $_[0]) }

sql('CREATE TABLE t (id serial PRIMARY KEY, xid bigint, pad text)');
sql('CREATE TABLE big AS SELECT g, repeat(md5(g::text), 10) AS pad FROM generate_series(1, 60000) g');

# One row per transaction; returns the ids inserted.
my %row;    # id -> { xid, ts (commit time text), us (epoch microseconds), lsn_after }
sub workload
{
	my ($n) = @_;
	my @ids;
	for (1 .. $n)
	{
		my $id = sql("INSERT INTO t (xid, pad) VALUES (txid_current(), 'x') RETURNING id");
		my $info = sql("SELECT xmin::text, pg_xact_commit_timestamp(xmin),
			extract(epoch FROM pg_xact_commit_timestamp(xmin)) * 1000000, pg_current_wal_insert_lsn()
			FROM t WHERE id = $id");
		my ($xid, $ts, $us, $lsn) = split /\|/, $info;
		$row{$id} = { xid => $xid, ts => $ts, us => $us, lsn => $lsn };
		push @ids, $id;
	}
	return @ids;
}

sub wait_archived
{
	my $seg = sql('SELECT pg_walfile_name(pg_current_wal_lsn())');
	sql('SELECT pg_switch_wal()');
	ok( $src->poll_query_until('postgres',
			"SELECT last_archived_wal >= '$seg' FROM pg_stat_archiver"),
		"segment $seg archived");
	return $seg;
}

my @before = workload(5);
wait_archived();    # the first segment creates the repository

# --- the base backup ---------------------------------------------------------------------

my $r = run_pgark([ '--config', $config, 'backup', '--no-progress', '--json' ]);
is($r->{rc}, 0, 'pgark backup') or diag($r->{stderr});
my $summary = eval { decode_json($r->{stdout}) } // {};
my $label = $summary->{label} // 'none';

# Stop times are whole seconds: a target must be a second past the backup's end.
wait_past_stop_time($summary->{stop_time});

my @a = workload(8);    # just after the backup
wait_archived();
my @b = workload(8);
my $rp_lsn = sql("SELECT pg_create_restore_point('before_c')");
my @c = workload(8);
wait_archived();
my @after_rp = workload(3);    # so that a transaction ends after every target
my $last_seg = wait_archived();

# wal-push moved the timeline's high-water mark with each segment it archived.
my $mark = repo_cat($repo, 'main', 'wal/00000001.hwm');
is($mark->{rc}, 0, 'wal-push wrote the high-water mark of timeline 1') or diag($mark->{stderr});
my $hwm = eval { decode_json($mark->{stdout}) } // {};
is($hwm->{segment}, $last_seg, 'it covers the last segment archived');
is($hwm->{writer}, 'wal-push', 'and names its writer');

my @all = sort { $a <=> $b } keys %row;

sub expect_ids
{
	my ($pred) = @_;
	return join(',', grep { $pred->($row{$_}) } @all);
}

my $rnum = 0;

# Restore into a fresh node with the given pgark arguments, start it (archiving off, so
# the restored cluster does not write into the repository), wait for the end of
# recovery, return the node.
sub restore_to
{
	my ($args, %opt) = @_;
	my $node = PostgreSQL::Test::Cluster->new('r' . ++$rnum);
	my $res = run_pgark([ '--config', $config, 'restore', '--pgdata', $node->data_dir, @$args ]);
	is($res->{rc}, 0, "restore @$args") or diag($res->{stderr});
	$node->append_conf('postgresql.conf',
		"port = " . $node->port . "\narchive_mode = off\n");
	$node->start;
	my $done = $opt{paused}
	  ? "SELECT pg_get_wal_replay_pause_state() = 'paused'"
	  : 'SELECT NOT pg_is_in_recovery()';
	ok($node->poll_query_until('postgres', $done), "recovery of @$args finished");
	return ($node, $res);
}

sub check_rows
{
	my ($node, $expect, $what) = @_;
	is($node->safe_psql('postgres', "SELECT string_agg(id::text, ',' ORDER BY id) FROM t"),
		$expect, $what);
}

# --- time targets ---------------------------------------------------------------------------

my $k = $a[0];    # the first transaction after the backup
my ($n, $res) = restore_to([ '--target-time', $row{$k}{ts}, '--target-action', 'promote' ]);
check_rows($n, expect_ids(sub { $_[0]{us} <= $row{$k}{us} }),
	'time just after the backup: rows committed at or before it');
like($res->{stdout}, qr/restored backup "\Q$label\E"/, 'the backup chosen is named');
$n->stop;

$k = $a[4];    # inside an archived segment
($n) = restore_to([ '--target-time', $row{$k}{ts}, '--target-action', 'promote' ]);
check_rows($n, expect_ids(sub { $_[0]{us} <= $row{$k}{us} }),
	'time inside an archived segment, inclusive');
$n->stop;

($n) = restore_to(
	[ '--target-time', $row{$k}{ts}, '--target-exclusive', '--target-action', 'promote' ]);
check_rows($n, expect_ids(sub { $_[0]{us} < $row{$k}{us} }),
	'the same time, exclusive: strictly before');
$n->stop;

# --- xid, LSN, restore point, immediate, latest -------------------------------------------

$k = $b[3];
($n) = restore_to([ '--target-xid', $row{$k}{xid}, '--target-action', 'promote' ]);
check_rows($n, expect_ids(sub { $_[0]{xid} <= $row{$k}{xid} }), 'xid, inclusive');
$n->stop;

($n) = restore_to(
	[ '--target-xid', $row{$k}{xid}, '--target-exclusive', '--target-action', 'promote' ]);
check_rows($n, expect_ids(sub { $_[0]{xid} < $row{$k}{xid} }), 'xid, exclusive');
$n->stop;

$k = $b[5];
($n) = restore_to([ '--target-lsn', $row{$k}{lsn}, '--target-action', 'promote' ]);
check_rows($n, expect_ids(sub { $_[0]{xid} <= $row{$k}{xid} }),
	'LSN just after a commit: up to that commit');
$n->stop;

($n) = restore_to([ '--target-name', 'before_c' ], paused => 1);
check_rows($n, expect_ids(sub { $_[0]{xid} <= $row{ $b[-1] }{xid} }),
	'restore point: everything before it, server paused there');
$n->stop;

($n) = restore_to([ '--target', 'immediate', '--target-action', 'promote' ]);
check_rows($n, join(',', @before), 'immediate: the rows of the backup only');
$n->stop;

# Latest, with two more backup folders whose manifests cannot be read (one cut short,
# one another backup's copied under a new name): each is skipped with a warning naming
# it, and the restore goes on from the real one.
make_path("$repo/main/backups/zz-cut", "$repo/main/backups/zz-renamed");
{
	my $real = "$repo/main/backups/$label/manifest.json";
	open(my $in, '<:raw', $real) or die "$real: $!";
	local $/;
	my $bytes = <$in>;
	close($in);
	open(my $out, '>:raw', "$repo/main/backups/zz-cut/manifest.json") or die;
	print $out substr($bytes, 0, 40);
	close($out);
	open($out, '>:raw', "$repo/main/backups/zz-renamed/manifest.json") or die;
	print $out $bytes;
	close($out);
}
($n, $res) = restore_to([]);
check_rows($n, join(',', @all), 'latest: every archived row');
like($res->{stderr}, qr/skipping backup "zz-cut":.*repository "local"/,
	'a manifest cut short: skipped, named with its repository');
like($res->{stderr}, qr/skipping backup "zz-renamed":.*written under another name/,
	'a manifest copied from another backup: skipped, as written under another name');
like($res->{stdout}, qr/restored backup "\Q$label\E"/, 'the real backup restored');
$n->stop;
rmtree(["$repo/main/backups/zz-cut", "$repo/main/backups/zz-renamed"]);

# --- a target the archive does not reach: --start --wait fails with the server's words --

{
	my $node = PostgreSQL::Test::Cluster->new('unreached');
	my $res = run_pgark([ '--config', $config, 'restore', '--pgdata', $node->data_dir,
		'--target-xid', '4000000000', '--start', '--wait', '--port', $node->port ]);
	is($res->{rc}, 1, 'an xid that never comes: --start --wait exits 1');
	like($res->{stderr}, qr/recovery ended before the target was reached/,
		'and says the target was not reached');
	like($res->{stderr}, qr/recovery ended before configured recovery target was reached/,
		'quoting the server');
}

# --- the server --start starts: none of pgark's secrets in its environment -----------------

{
	my $node = PostgreSQL::Test::Cluster->new('cleanenv');
	my %secret = (
		AWS_SECRET_ACCESS_KEY => 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLEKEY',
		AWS_ACCESS_KEY_ID => 'AKIAIOSFODNN7EXAMPLE',
		AWS_SESSION_TOKEN => 'session-token-example-0123',
		PGARK_PASSPHRASE => 'correct horse battery staple',
		PGPASSWORD => 'hunter2-pgpassword',
		LC_MY_TOKEN => 'looks-like-a-locale-but-is-not');
	my $res = run_pgark(
		[ '--config', $config, 'restore', '--pgdata', $node->data_dir, '--target-name',
			'before_c', '--start', '--wait', '--port', $node->port ],
		env => { %secret, TZ => 'UTC' });
	is($res->{rc}, 0, 'restore --start --wait with secrets in pgark\'s environment')
	  or diag($res->{stderr});
	like($res->{stdout}, qr/recovery paused at the target/, 'the server waits at the target');
	like($res->{stdout},
		qr/the server is read-only, paused in recovery: look at the data \(psql -h "[^"]+" -p \d+\), then promote it with SELECT pg_wal_replay_resume\(\);/,
		'and pgark says how to look at it and how to promote it');
	my ($pid) = split /\n/, slurp_file($node->data_dir . '/postmaster.pid');
	my $raw = slurp_file("/proc/$pid/environ");
	my %env = map { /^([^=]*)=(.*)$/s ? ($1 => $2) : ($_ => undef) } split /\0/, $raw;
	note('server environment: ' . join(' ', sort keys %env));
	for my $name (sort keys %secret)
	{
		ok(!exists $env{$name}, "the postmaster's environment has no $name");
		is(index($raw, $secret{$name}), -1, "nor its value");
	}
	is($env{TZ}, 'UTC', 'an allowed variable comes through');
	ok(defined $env{PATH}, 'and PATH');
	is($env{LC_ALL}, 'C', 'LC_ALL=C, so that pgark reads the server\'s log in English');
	# pg_ctl adds PGDATA, PG_GRANDPARENT_PID, PGSYSCONFDIR and PGLOCALEDIR, and the shell
	# it starts the postmaster with adds PWD.
	is_deeply(
		[
			grep {
				!/^(PATH|HOME|USER|LOGNAME|TMPDIR|TZ|LANG|LANGUAGE|LC_[A-Z]+|LD_LIBRARY_PATH|PG_OOM_ADJUST_(FILE|VALUE))$/
				  && !/^(PGDATA|PG_GRANDPARENT_PID|PGSYSCONFDIR|PGLOCALEDIR|PWD)$/
			} sort keys %env
		],
		[],
		'nothing outside the allow-list (and what pg_ctl and its shell add)');
	$node->_update_pid(1);
	$node->stop;
}

# A configuration that reads the environment cannot serve that server's restore_command:
# refused before anything is written.
{
	my $envcfg = write_config(slurp_file($config) =~ s{spool: \S+}{spool: \${PGARK_T_SPOOL}}r,
		"$tmp/pgark-env.yaml");
	my $dir = "$tmp/envcfg";
	$r = run_pgark([ '--config', $envcfg, 'restore', '--pgdata', $dir, '--start' ],
		env => { PGARK_T_SPOOL => "$tmp/spool" });
	is($r->{rc}, 2, 'restore --start with a configuration that reads ${VAR}: exit 2');
	like($r->{stderr},
		qr/--start: "\Q$envcfg\E" reads \$\{PGARK_T_SPOOL\} from the environment, which the server it starts does not get/,
		'naming the variable');
	like($r->{stderr}, qr/hint: give secrets with KEY_file keys/, 'with a hint');
	ok(!-e $dir, 'and the directory was not created');
}

# --- refusals: exit 2, directory untouched ---------------------------------------------------

my $full = "$tmp/notempty";
write_file("$full/keep.txt", "mine\n");
$r = run_pgark([ '--config', $config, 'restore', '--pgdata', $full ]);
is($r->{rc}, 2, 'non-empty data directory: exit 2');
like($r->{stderr}, qr/data directory "\Q$full\E" is not empty/, 'and says so');
is(join(',', map { s{.*/}{}r } glob("$full/*")), 'keep.txt', 'and nothing was written');

$r = run_pgark([ '--config', $config, 'restore', '--delta', '--pgdata', $src->data_dir ]);
is($r->{rc}, 2, 'running server: exit 2');
like($r->{stderr}, qr/a server is running on/, 'and says so');

my $empty = "$tmp/window";
for my $case (
	[ 'before the backup', $row{ $before[0] }{ts} ],
	[ 'after the last commit', '2999-01-01 00:00:00+00' ])
{
	$r = run_pgark(
		[ '--config', $config, 'restore', '--pgdata', $empty, '--target-time', $case->[1] ]);
	is($r->{rc}, 2, "target time $case->[0]: exit 2");
	like($r->{stderr}, qr/is outside the restorable window \S+ \S+ \.\. \S+ \S+/,
		'the message names the window');
	ok(!-e $empty, 'and the directory was not created');
}

# --- wal-fetch ----------------------------------------------------------------------------

my $wdir = "$tmp/walfetch";
make_path($wdir);
$r = run_pgark([ '--config', $config, 'wal-fetch', '0000000100000000000000EE', "$wdir/RECOVERYXLOG" ]);
is($r->{rc}, 1, 'missing segment: exit 1');
ok(!-e "$wdir/RECOVERYXLOG", 'and nothing written');
$r = run_pgark([ '--config', $config, 'wal-fetch', 'RECOVERYXLOG.backup', "$wdir/RECOVERYXLOG" ]);
is($r->{rc}, 1, 'a name that is no WAL file: exit 1');

my $seg = (sort grep { /\/[0-9A-F]{24}$/ } glob("$repo/main/wal/00000001/*"))[-1];
my ($segname) = $seg =~ m{/([0-9A-F]{24})$};
$r = run_pgark([ '--config', $config, 'wal-fetch', $segname, "$wdir/RECOVERYXLOG" ]);
is($r->{rc}, 0, "segment $segname fetched");
is(-s "$wdir/RECOVERYXLOG", 16 * 1024 * 1024, 'a whole segment');
is(slurp_file("$wdir/RECOVERYXLOG"), slurp_file($src->data_dir . "/pg_wal/$segname"),
	'equal to the server\'s') if -e $src->data_dir . "/pg_wal/$segname";
unlink("$wdir/RECOVERYXLOG");

# A second repository that cannot be opened: what the first has is served (with a
# warning naming the other); what it lacks cannot be called missing, since the other
# might hold it.
my $config2 = write_config(<<"EOF", "$tmp/pgark-gone.yaml");
spool: $tmp/spool
repos:
  local: { type: posix, path: $repo }
  gone: { type: posix, path: $tmp/no-such-repository }
clusters:
  main:
    conninfo: "host=@{[$src->host]} port=@{[$src->port]} dbname=postgres"
    repos: [local, gone]
EOF
$r = run_pgark([ '--config', $config2, 'wal-fetch', $segname, "$wdir/RECOVERYXLOG" ]);
is($r->{rc}, 0, 'one repository cannot be opened: a segment the other has is served');
unlink("$wdir/RECOVERYXLOG");
$r = run_pgark([ '--config', $config2, 'wal-fetch', '0000000100000000000000EE', "$wdir/RECOVERYXLOG" ]);
is($r->{rc}, 255, 'a segment the open one lacks: exit 255, not "missing"');
like($r->{stderr}, qr/repository "gone"/, 'naming the repository that failed');
ok(!-e "$wdir/RECOVERYXLOG", 'and nothing written');
$r = run_pgark([ '--config', "$tmp/no-such-config.yaml", 'wal-fetch', $segname, "$wdir/RECOVERYXLOG" ]);
is($r->{rc}, 255, 'no configuration: exit 255');

# Damage the stored object: one byte flipped in the middle.
{
	open(my $fh, '+<', $seg) or die;
	binmode($fh);
	my $size = -s $seg;
	seek($fh, int($size / 2), 0);
	read($fh, my $byte, 1);
	seek($fh, int($size / 2), 0);
	print $fh chr(ord($byte) ^ 0xff);
	close($fh);
}
$r = run_pgark([ '--config', $config, 'wal-fetch', $segname, "$wdir/RECOVERYXLOG" ]);
is($r->{rc}, 255, 'damaged segment: exit 255, which stops the server rather than ending recovery');
like($r->{stderr}, qr/\Q$segname\E.*repository "local"|repository "local".*\Q$segname\E/s,
	'the error names the segment and the repository');
ok(!-e "$wdir/RECOVERYXLOG", 'and nothing was written to DEST');
is(join(',', glob("$wdir/.pgark-fetch*")), '', 'not even a temporary file');

$src->stop;
done_testing();
