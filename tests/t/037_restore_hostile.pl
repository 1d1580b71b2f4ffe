# restore stays inside its targets: the data directory, the tablespace directories and
# the WAL directory, whatever the manifest says and whatever symlinks the directory it
# restores over holds.
#
# A real backup (a table in PGDATA, one in a tablespace) is taken; then manifests are
# planted in the repository, each the real one with one hostile change and with header
# totals (files, logical bytes) made consistent again, so that nothing but the checks
# stands in the way. For each: restore exits 3 with an error naming the entry and the
# backup, a sentinel file outside PGDATA keeps its bytes and mtime, nothing appears
# outside, and the data directory is not even created (or, restoring over one with
# --delta, is left exactly as it was).
#
# Then --delta: a header that sends a tablespace into a non-empty directory that is not
# the data directory's own tablespace is refused (exit 2); and --delta over a restored
# directory where symlinks (and a hard link) point outside, where the backup has a directory or a file, and a stale temporary file name
# is a symlink: nothing outside is changed or deleted, and the restored cluster's rows
# are the backup's. A pg_wal symlink (the DBA's WAL volume) is kept and emptied of what
# the backup does not hold, never entered further. Last, --waldir: pg_wal becomes a
# symlink to it, the cluster replays through it; and the refusals of --waldir and
# --tablespace-map directories that are relative, inside PGDATA or not empty (exit 2).
use strict;
use warnings;

use File::Basename qw(dirname);
use File::Find;
use File::Path qw(make_path rmtree);
use JSON::PP;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use PgarkTest;

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

$src->init(allows_streaming => 1);
$src->append_conf('postgresql.conf', "autovacuum = off\n");
$src->start;
sub sql { return $src->safe_psql('postgres', $_[0]) }

my $tssrc = "$tmp/ts_src";
make_path($tssrc);
sql("CREATE TABLESPACE ts1 LOCATION '$tssrc'");
sql("CREATE TABLE t AS SELECT g AS id, md5(g::text) AS v FROM generate_series(1, 5000) g");
sql("CREATE TABLE in_ts TABLESPACE ts1 AS SELECT g AS id FROM generate_series(1, 3000) g");
my $oid = sql("SELECT oid FROM pg_tablespace WHERE spcname = 'ts1'");
my $rows_sql = "SELECT (SELECT md5(string_agg(id || v, ',' ORDER BY id)) FROM t) || ':' || "
  . "(SELECT sum(id) FROM in_ts)";

my $r = run_pgark([ '--config', $config, 'backup', '--no-progress', '--json' ]);
is($r->{rc}, 0, 'pgark backup') or diag($r->{stderr});
my $label = decode_json($r->{stdout})->{label};
my $want_rows = sql($rows_sql);
my $dboid = sql("SELECT oid FROM pg_database WHERE datname = 'postgres'");
my $t_file = sql("SELECT pg_relation_filepath('t')");
my $ts_file = sql("SELECT pg_relation_filepath('in_ts')");
my ($version_dir) = $ts_file =~ m{^pg_tblspc/$oid/([^/]+)/} or die "no version directory in $ts_file";

# The real manifest: header and entries, in order.
my $json = JSON::PP->new->canonical;
$r = run_cmd([ tool_bin('repo_dump'), $repo, 'main', 'get', "backups/$label/manifest.json" ]);
die "cannot read the manifest: $r->{stderr}" if $r->{rc};
my @lines = split /\n/, $r->{stdout};
my $header = $json->decode(shift @lines);
my @entries = map { $json->decode($_) } @lines;
my ($pg_version_entry) = grep { $_->{path} eq 'PG_VERSION' } @entries;
my ($ts_link) = grep { $_->{path} eq "pg_tblspc/$oid" } @entries;
ok($pg_version_entry && $ts_link && $ts_link->{type} eq 'symlink' && $ts_link->{link} eq $tssrc,
	"the manifest has PG_VERSION and the symlink pg_tblspc/$oid -> $tssrc");

# Plant a manifest under a new label: the real one with $edit applied to a copy of the
# entries (and of the header); totals recomputed unless keep_totals.
my $planted = 0;
sub plant
{
	my ($edit, %opt) = @_;
	my $l = sprintf('hostile-%02d', ++$planted);
	my $h = $json->decode($json->encode($header));
	my @e = map { $json->decode($json->encode($_)) } @entries;
	$h->{label} = $l;
	@e = $edit->($h, @e);
	unless ($opt{keep_totals})
	{
		$h->{files} = scalar @e;
		$h->{logical_bytes} = 0;
		$h->{logical_bytes} += $_->{size} // 0 for @e;
	}
	repo_plant($repo, 'main', "backups/$l/manifest.json",
		join('', map { $json->encode($_) . "\n" } $h, @e));
	return $l;
}

# A file entry with PG_VERSION's content under another path.
sub file_as
{
	my ($path, %set) = @_;
	my $e = $json->decode($json->encode($pg_version_entry));
	$e->{path} = $path;
	$e->{$_} = $set{$_} for keys %set;
	return $e;
}

sub link_entry
{
	my ($path, $target) = @_;
	return { path => $path, type => 'symlink', mode => 777, mtime => 1700000000, link => $target };
}

# Outside PGDATA: a sentinel with an old mtime (made afresh before each scenario, so
# that each one is judged on its own), and the state of the whole directory.
my $outside = "$tmp/outside";
sub reset_outside
{
	rmtree($outside);
	make_path($outside);
	write_file("$outside/sentinel", "sentinel: must stay\n", 0644);
	utime(1_000_000_000, 1_000_000_000, "$outside/sentinel");
	return;
}
reset_outside();

# path -> "type size mtime mode link" for everything beneath $dir (lstat: no following).
sub snapshot
{
	my ($dir) = @_;
	my %s;
	return \%s unless -e $dir || -l $dir;
	find({ no_chdir => 1, follow => 0, wanted => sub {
		my @st = lstat($_) or return;
		my $type = -l _ ? 'l' : -d _ ? 'd' : -f _ ? 'f' : '?';
		my $what = $type eq 'f' ? slurp_bytes($_) : $type eq 'l' ? readlink($_) : '';
		# a directory's mtime changes with what it holds: its entries show that
		$s{$_} = join(' ', $type, $st[7], $type eq 'd' ? '' : $st[9], $st[2] & 07777, $what);
	} }, $dir);
	return \%s;
}

my $outside_before = snapshot($outside);

# --- hostile manifests, each refused before the first byte -------------------------------

my $hst = "$tmp/hostile";
my @scenarios = (
	{
		name => 'a symlink out of PGDATA, then a file beneath it',
		edit => sub { my ($h, @e) = @_; (@e, link_entry('escape', $outside), file_as('escape/sentinel')) },
		error => qr/manifest entry "escape" is a symlink: restore makes symlinks only for the tablespaces the manifest header lists \(pg_tblspc\/<oid>\)\n\s+at line \d+ of the manifest/,
	},
	{
		name => 'a symlink named like the recovery settings\' temporary file',
		edit => sub { my ($h, @e) = @_; (@e, link_entry('.postgresql.auto.conf.pgark-tmp', "$outside/sentinel")) },
		error => qr/manifest entry "\.postgresql\.auto\.conf\.pgark-tmp" is a symlink: restore makes symlinks only/,
	},
	{
		name => 'a symlink in a subdirectory, then a file beneath it',
		edit => sub { my ($h, @e) = @_; (@e, link_entry("base/$dboid/evil", $outside), file_as("base/$dboid/evil/sentinel")) },
		error => qr/manifest entry "base\/$dboid\/evil" is a symlink: restore makes symlinks only/,
	},
	{
		name => 'pg_wal as a symlink out of PGDATA',
		edit => sub { my ($h, @e) = @_; map { $_->{path} eq 'pg_wal' ? link_entry('pg_wal', $outside) : $_ } @e },
		error => qr/manifest entry "pg_wal" is a symlink: restore makes symlinks only/,
	},
	{
		name => 'a ".." path',
		edit => sub { my ($h, @e) = @_; (@e, file_as('base/../../outside/sentinel')) },
		error => qr/manifest line \d+: entry "base\/\.\.\/\.\.\/outside\/sentinel" has a "\." or "\.\." component/,
	},
	{
		name => 'an absolute path',
		edit => sub { my ($h, @e) = @_; (@e, file_as("$outside/sentinel")) },
		error => qr/manifest line \d+: entry "\Q$outside\E\/sentinel" is an absolute path/,
	},
	{
		name => 'a control character in a path',
		edit => sub { my ($h, @e) = @_; (@e, file_as("log\n2026-01-01 00:00:00 error: forged")) },
		error => qr/manifest line \d+: entry "log\\x0a2026-01-01 00:00:00 error: forged" has a control character/,
	},
	{
		name => 'a path twice',
		edit => sub { my ($h, @e) = @_; (@e, file_as($t_file)) },
		error => qr/manifest entry "\Q$t_file\E" appears twice in the manifest/,
	},
	{
		name => 'a file beneath a file',
		edit => sub { my ($h, @e) = @_; (@e, file_as('PG_VERSION/sentinel')) },
		error => qr/manifest entry "PG_VERSION\/sentinel" is beneath "PG_VERSION", a file of the manifest/,
	},
	{
		name => 'a tablespace symlink pointing elsewhere than the header says',
		edit => sub { my ($h, @e) = @_; $_->{link} = $outside for grep { $_->{path} eq "pg_tblspc/$oid" } @e; @e },
		error => qr/manifest entry "pg_tblspc\/$oid" points to "\Q$outside\E", not to the location the manifest header gives tablespace $oid/,
	},
	{
		name => 'a symlink for a tablespace the header does not list',
		edit => sub { my ($h, @e) = @_; (@e, link_entry('pg_tblspc/99999', $outside), file_as("pg_tblspc/99999/$version_dir/sentinel")) },
		error => qr/manifest entry "pg_tblspc\/99999" is a symlink: restore makes symlinks only/,
	},
	{
		name => 'a file in a tablespace outside its version directory',
		edit => sub { my ($h, @e) = @_; (@e, file_as("pg_tblspc/$oid/.bashrc")) },
		error => qr/manifest entry "pg_tblspc\/$oid\/\.bashrc" is in tablespace $oid but not in its version directory \(PG_\d+_<catalog version>\)/,
	},
	{
		name => 'a relative tablespace location',
		edit => sub {
			my ($h, @e) = @_;
			$h->{tablespaces}[0]{location} = 'ts_relative';
			$_->{link} = 'ts_relative' for grep { $_->{path} eq "pg_tblspc/$oid" } @e;
			@e;
		},
		nomap => 1,
		error => qr/the location "ts_relative" of tablespace $oid is not an absolute path/,
		hint => qr/hint: give --tablespace-map $oid=DIR to restore the tablespace elsewhere; nothing was changed/,
	},
	{
		name => 'a tablespace location inside PGDATA',
		edit => sub {
			my ($h, @e) = @_;
			my $in = "$hst/" . sprintf('%02d', $planted) . '/pgdata/ts_inside';
			$h->{tablespaces}[0]{location} = $in;
			$_->{link} = $in for grep { $_->{path} eq "pg_tblspc/$oid" } @e;
			@e;
		},
		nomap => 1,
		error => qr/the location "[^"]+\/pgdata\/ts_inside" of tablespace $oid is inside the data directory "[^"]+\/pgdata"/,
		hint => qr/hint: give --tablespace-map $oid=DIR to restore the tablespace elsewhere; nothing was changed/,
	},
	{
		name => 'a setuid file',
		edit => sub { my ($h, @e) = @_; $_->{mode} = 4755 for grep { $_->{path} eq 'PG_VERSION' } @e; @e },
		error => qr/manifest entry "PG_VERSION" is a file with mode 4755: setuid, setgid and sticky bits are never restored/,
	},
	{
		name => 'header totals not consistent (one file more announced)',
		edit => sub { my ($h, @e) = @_; $h->{files} = @e + 1; $h->{logical_bytes} = 0; $h->{logical_bytes} += $_->{size} // 0 for @e; @e },
		keep_totals => 1,
		error => qr/manifest truncated: the header announces \d+ files, \d+ were read/,
	},
);

for my $s (@scenarios)
{
	my $l = plant($s->{edit}, keep_totals => $s->{keep_totals});
	my $dir = "$hst/" . sprintf('%02d', $planted);
	my $pgdata = "$dir/pgdata";
	make_path($dir);
	reset_outside();
	# the header's location is the source's own tablespace: elsewhere, or the check that
	# it is empty would refuse first
	my @map = $s->{nomap} ? () : ('--tablespace-map', "$oid=$dir/ts");
	$r = run_pgark([ '--config', $config, 'restore', '--pgdata', $pgdata, '--backup', $l, @map ]);
	is($r->{rc}, 3, "$s->{name}: exit 3");
	like($r->{stderr}, $s->{error}, "$s->{name}: the error names the entry");
	like($r->{stderr}, qr/while checking the manifest of backup "$l"/, "$s->{name}: and the backup");
	like($r->{stderr}, $s->{hint} // qr/hint: nothing was changed/, "$s->{name}: nothing was changed, says the hint");
	ok(!-e $pgdata && !-l $pgdata, "$s->{name}: the data directory was not even created");
	ok(!-e "$dir/ts", "$s->{name}: nor the tablespace directory");
	is_deeply(snapshot($outside), $outside_before, "$s->{name}: nothing outside changed (sentinel bytes and mtime)");
}
ok(!-e 'ts_relative', 'no relative tablespace directory was made either');

# --- restore the real backup, then --delta over hostile leftovers ------------------------

my $dst = PostgreSQL::Test::Cluster->new('dst');
my $d = $dst->data_dir;
my $tsd = "$tmp/ts_dst";
my @restore = ('--config', $config, 'restore', '--pgdata', $d, '--backup', $label,
	'--tablespace-map', "$oid=$tsd", '--target', 'immediate', '--target-action', 'promote');
$r = run_pgark([@restore]);
is($r->{rc}, 0, 'restore of the real backup') or diag($r->{stderr});

# A hostile manifest over it with --delta: refused, the directory left exactly as it was.
{
	my $l = plant($scenarios[0]{edit});
	reset_outside();
	my $before = snapshot($d);
	my $ts_before = snapshot($tsd);
	$r = run_pgark([ '--config', $config, 'restore', '--pgdata', $d, '--backup', $l, '--delta',
		'--tablespace-map', "$oid=$tsd" ]);
	is($r->{rc}, 3, '--delta with a hostile manifest: exit 3');
	like($r->{stderr}, $scenarios[0]{error}, '--delta with a hostile manifest: the error names the entry');
	is_deeply(snapshot($d), $before, '--delta with a hostile manifest: the data directory is unchanged');
	is_deeply(snapshot($tsd), $ts_before, '--delta with a hostile manifest: the tablespace directory too');
	is_deeply(snapshot($outside), $outside_before, '--delta with a hostile manifest: nothing outside changed');
}

# A manifest whose header sends the tablespace into another cluster's tablespace
# directory (same version directory name): with --delta, restore would write there and
# prune what its backup does not hold. Refused: it is not where this data directory's
# pg_tblspc link points.
{
	my $other = "$tmp/other_cluster_ts";
	write_file("$other/$version_dir/$dboid/16390", "another cluster's table\n", 0600);
	my $l = plant(sub {
		my ($h, @e) = @_;
		$h->{tablespaces}[0]{location} = $other;
		$_->{link} = $other for grep { $_->{path} eq "pg_tblspc/$oid" } @e;
		@e;
	});
	my $before = snapshot($d);
	my $other_before = snapshot($other);
	$r = run_pgark([ '--config', $config, 'restore', '--pgdata', $d, '--backup', $l, '--delta' ]);
	is($r->{rc}, 2, '--delta into another cluster\'s tablespace directory: exit 2');
	like($r->{stderr},
		qr/tablespace directory "\Q$other\E" \(tablespace $oid\) is not empty, and it is not the one "\Q$d\E\/pg_tblspc\/$oid" links to/,
		'--delta into another cluster\'s tablespace directory: the error says why');
	is_deeply(snapshot($other), $other_before, '--delta into another cluster\'s tablespace directory: it is untouched');
	is_deeply(snapshot($d), $before, '--delta into another cluster\'s tablespace directory: the data directory too');
}

# What an earlier life of the directory (or someone) left: links where the backup has a
# directory or a file, a hard link, a symlinked temporary name, a link to delete.
my $victims = "$tmp/victims";
make_path("$victims/global_dir", "$victims/extra_dir", "$victims/status_dir", "$victims/ts_dir/$version_dir");
write_file("$victims/global_dir/1262", "victim: global\n", 0600);
write_file("$victims/global_dir/pg_control", "victim: control\n", 0600);
write_file("$victims/extra_dir/data", "victim: extra\n", 0600);
write_file("$victims/status_dir/000000010000000000000001.done", "", 0600);
write_file("$victims/t_file", "victim: t\n", 0600);
write_file("$victims/ts_file", "victim: ts\n", 0600);
write_file("$victims/tmp_file", "victim: tmp\n", 0600);
write_file("$victims/hard", "victim: hard\n", 0600);
write_file("$victims/ts_dir/$version_dir/keep", "victim: ts dir\n", 0600);
utime(1_000_000_000, 1_000_000_000, glob("$victims/*/* $victims/*"));
my $victims_before = snapshot($victims);

rmtree("$d/global");
symlink("$victims/global_dir", "$d/global") or die;
unlink("$d/$t_file") or die;
symlink("$victims/t_file", "$d/$t_file") or die;
symlink("$victims/tmp_file", "$d/.postgresql.auto.conf.pgark-tmp") or die;
symlink("$victims/extra_dir", "$d/extra_link") or die;
unlink("$d/PG_VERSION") or die;
link("$victims/hard", "$d/PG_VERSION") or die;
unlink("$d/pg_tblspc/$oid") or die;
symlink("$victims/ts_dir", "$d/pg_tblspc/$oid") or die;
(my $ts_rel = $ts_file) =~ s{^pg_tblspc/$oid/}{};
unlink("$tsd/$ts_rel") or die;
symlink("$victims/ts_file", "$tsd/$ts_rel") or die;
write_file("$tsd/not_ours", "the tablespace directory's own\n", 0600);
write_file("$tsd/$version_dir/$dboid/99999", "not in the backup\n", 0600);
# pg_wal on a volume of its own, with what an earlier life left there
my $walvol = "$tmp/walvol";
system('mv', "$d/pg_wal", $walvol) == 0 or die;
symlink($walvol, "$d/pg_wal") or die;
write_file("$walvol/00000001000000000000000F", "stale WAL\n", 0600);
rmtree("$walvol/archive_status");
symlink("$victims/status_dir", "$walvol/archive_status") or die;

$r = run_pgark([ @restore, '--delta', '--json' ]);
is($r->{rc}, 0, 'restore --delta over the links') or diag($r->{stderr});
is_deeply(snapshot($victims), $victims_before, 'nothing the links pointed to was changed or deleted');
is_deeply(snapshot($outside), $outside_before, 'nothing outside changed');
ok(-d "$d/global" && !-l "$d/global", 'global is a directory again');
ok(-f "$d/$t_file" && !-l "$d/$t_file", "$t_file is a file again");
is((stat "$d/PG_VERSION")[3], 1, 'PG_VERSION is a file of its own (no other hard link)');
ok(!-e "$d/extra_link" && !-l "$d/extra_link", 'the extra link is gone');
ok(!-l "$d/.postgresql.auto.conf.pgark-tmp" && !-e "$d/.postgresql.auto.conf.pgark-tmp",
	'no temporary file is left');
is(readlink("$d/pg_tblspc/$oid"), $tsd, "pg_tblspc/$oid points to the mapped directory again");
ok(-f "$tsd/$ts_rel" && !-l "$tsd/$ts_rel", 'the tablespace file is a file again');
ok(!-e "$tsd/$version_dir/$dboid/99999", 'what the backup does not hold in the tablespace is removed');
ok(-f "$tsd/not_ours", 'what is beside the version directory in the tablespace directory stays');
is(readlink("$d/pg_wal"), $walvol, 'pg_wal is still a symlink to the WAL volume');
ok(!-e "$walvol/00000001000000000000000F", 'the stale WAL in it is removed');
ok(-d "$walvol/archive_status" && !-l "$walvol/archive_status", 'archive_status is a directory again');

$dst->append_conf('postgresql.conf', 'port = ' . $dst->port . "\narchive_mode = off\n");
$dst->start;
ok($dst->poll_query_until('postgres', 'SELECT NOT pg_is_in_recovery()'), 'the restored cluster promotes');
is($dst->safe_psql('postgres', $rows_sql), $want_rows, 'its rows are the backup\'s');
$dst->stop;
is_deeply(snapshot($victims), $victims_before, 'and, once it ran, nothing outside changed either');

# --- --waldir -----------------------------------------------------------------------------

my $wdst = PostgreSQL::Test::Cluster->new('wdst');
my $w = $wdst->data_dir;
my $waldir = "$tmp/waldir_new";
my @wrestore = ('--config', $config, 'restore', '--pgdata', $w, '--backup', $label,
	'--tablespace-map', "$oid=$tmp/ts_w", '--target', 'immediate', '--target-action', 'promote');
my @refusals = (
	[ 'a relative --waldir', [ '--waldir', 'wal' ], qr/invalid --waldir "wal": expected an absolute directory/ ],
	[ '--waldir inside PGDATA', [ '--waldir', "$w/wal" ],
		qr/the --waldir directory "\Q$w\E\/wal" is inside the data directory "\Q$w\E"/ ],
	[ '--waldir around PGDATA', [ '--waldir', dirname($w) ],
		qr/the data directory "\Q$w\E" is inside the --waldir directory "\Q@{[dirname($w)]}\E"/ ],
	[ '--waldir in a tablespace directory', [ '--waldir', "$tmp/ts_w/wal" ],
		qr/the --tablespace-map directory "\Q$tmp\E\/ts_w" of tablespace $oid and the --waldir directory "\Q$tmp\E\/ts_w\/wal" overlap/ ],
	[ 'a non-empty --waldir', [ '--waldir', $outside ], qr/WAL directory "\Q$outside\E" is not empty/ ],
);
for my $x (@refusals)
{
	my ($name, $args, $error) = @$x;
	$r = run_pgark([ @wrestore, @$args ]);
	is($r->{rc}, 2, "$name: exit 2");
	like($r->{stderr}, $error, "$name: the error says why");
	ok(!-e $w, "$name: the data directory was not created");
}
$r = run_pgark([ '--config', $config, 'restore', '--pgdata', $w, '--backup', $label,
	'--tablespace-map', "$oid=$w/ts" ]);
is($r->{rc}, 2, 'a --tablespace-map directory inside PGDATA: exit 2');
like($r->{stderr}, qr/the --tablespace-map directory "\Q$w\E\/ts" of tablespace $oid is inside the data directory "\Q$w\E"/,
	'a --tablespace-map directory inside PGDATA: the error says why');
ok(!-e $w, 'a --tablespace-map directory inside PGDATA: the data directory was not created');

$r = run_pgark([ @wrestore, '--waldir', $waldir ]);
is($r->{rc}, 0, 'restore --waldir') or diag($r->{stderr});
is(readlink("$w/pg_wal"), $waldir, 'pg_wal is a symlink to the --waldir directory');
ok(-d "$waldir/archive_status", 'which holds the backup\'s pg_wal');
$wdst->append_conf('postgresql.conf', 'port = ' . $wdst->port . "\narchive_mode = off\n");
$wdst->start;
ok($wdst->poll_query_until('postgres', 'SELECT NOT pg_is_in_recovery()'), 'the cluster replays through it and promotes');
is($wdst->safe_psql('postgres', $rows_sql), $want_rows, 'its rows are the backup\'s');
my $seg = $wdst->safe_psql('postgres', 'SELECT pg_walfile_name(pg_current_wal_lsn())');
ok(-f "$waldir/$seg", "its current WAL segment $seg is in the --waldir directory");
$wdst->stop;
is_deeply(snapshot($outside), $outside_before, 'at the end, nothing outside changed');

$src->stop;
done_testing();
