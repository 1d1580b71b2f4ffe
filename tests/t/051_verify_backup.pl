# pgark verify, backups scope, against backups of a small pgbench database taken by
# `pgark backup` while `pgark receive` archives the WAL into two posix repositories:
# clean backups verify with exit 0; a byte flipped in a chunk, a chunk deleted, a
# manifest truncated, a file's sound chunks listed in the wrong order (only the file
# digest, over the chunks' SHA-256s, tells), a wrong whole-content "sha256" in a line
# as an older pgark wrote it (a right one verifies), a segment of a backup's WAL
# deleted each make verify exit 3 naming the repository, the backup and the file (or
# segment); --backup LABEL checks that backup alone; WAL older than the oldest backup
# is not required.
use strict;
use warnings;

use Digest::SHA qw(sha256_hex);
use File::Copy qw(copy);
use JSON::PP;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use PgarkTest;
use PgarkOps;

my $setup = ops_setup(dbname => 'postgres', extra => "    backup: { chunk_size: 64KiB }\n");
my ($node, $tmp, $config) = @$setup{qw(node tmp config)};
my %root = %{ $setup->{root} };

sub sql { return $node->safe_psql('postgres', $_[0]) }
my $dump = tool_bin('repo_dump');

sub pgark { return run_pgark([ '--config', $config, @_ ]) }

sub backup
{
	my $r = pgark('backup', '--no-progress', '--json', @_);
	is($r->{rc}, 0, 'backup exits 0') or diag($r->{stderr});
	return decode_json($r->{stdout});
}

# manifest.json of a backup in a repository: { path => line }
sub manifest
{
	my ($repo, $label) = @_;
	my $r = run_cmd([ $dump, $root{$repo}, 'main', 'get', "backups/$label/manifest.json" ]);
	die "cannot read manifest of $label: $r->{stderr}" if $r->{rc};
	my @lines = split /\n/, $r->{stdout};
	shift @lines;
	return { map { my $f = decode_json($_); ($f->{path} => $f) } @lines };
}

sub chunk_file { my ($repo, $name) = @_; return "$root{$repo}/main/chunks/" . substr($name, 0, 2) . "/$name" }

# --- two backups, the WAL archived around them ------------------------------------

my $rx = ops_receiver_start($config);
ok(poll_until(sub { sql("SELECT count(*) FROM pg_replication_slots WHERE active") eq '1' }),
	'receiver streams through its slot');
my $before_backups = sql('SELECT pg_walfile_name(pg_current_wal_lsn())');
sql('SELECT pg_switch_wal()');
$node->command_ok([ 'pgbench', '-i', '-s', '1', '-q', 'postgres' ], 'pgbench -i -s 1');
# Named: time-based labels have one-second resolution, and these follow each other closely.
my $b1 = backup('--label', 'b1');
$node->command_ok([ 'pgbench', '-t', '200', '-n', 'postgres' ], 'pgbench transactions');
my $b2 = backup('--label', 'b2');
sql('CREATE TABLE after_backups AS SELECT 1 AS x');
my $last = sql('SELECT pg_walfile_name(pg_current_wal_lsn())');
sql('SELECT pg_switch_wal()');
ok( poll_until(
		sub {
			-f "$root{one}/main/wal/00000001/$last"
			  && -f "$root{two}/main/wal/00000001/$last";
		}),
	"both repositories hold $last");
is(ops_receiver_stop($rx), 0, 'receiver stops cleanly');

my ($l1, $l2) = ($b1->{label}, $b2->{label});

sub verify_json
{
	my (@args) = @_;
	my $r = pgark('verify', '--json', @args);
	my $doc = eval { decode_json($r->{stdout}) };
	ok($doc, 'verify --json prints JSON') or diag($r->{stdout}, $r->{stderr});
	# Seconds are milliseconds' worth of digits (not 1.9430000000000001).
	like($r->{stdout}, qr/"seconds": \d+(?:\.\d{1,3})?,?\n/, 'its seconds have at most 3 decimals');
	return ($r->{rc}, $doc // { problems => [], repositories => [] });
}

# --- clean --------------------------------------------------------------------------

my $r = pgark('verify');
is($r->{rc}, 0, 'verify of clean backups exits 0') or diag($r->{stdout});
like($r->{stdout}, qr/cluster "main": no problems found/, 'and says so');
my ($rc, $doc) = verify_json();
is($rc, 0, '--json exits 0');
for my $repo (@{ $doc->{repositories} })
{
	is($repo->{backups}, 2, "repository $repo->{name}: both backups read");
	cmp_ok($repo->{files}, '>', 300, "repository $repo->{name}: files recomputed");
	cmp_ok($repo->{chunks}, '>', 100, "repository $repo->{name}: chunks read");
}

($rc, $doc) = verify_json('--backup', $l1);
is($rc, 0, "verify --backup $l1 exits 0");
is($doc->{backup}, $l1, 'the report names the backup');
is($_->{backups}, 1, "repository $_->{name}: only that backup read") for @{ $doc->{repositories} };
cmp_ok($_->{segments}, '>=', 1, "repository $_->{name}: its WAL read") for @{ $doc->{repositories} };

$r = pgark('verify', '--backup', '20000101T000000Z');
is($r->{rc}, 3, 'verify --backup of a label that is not there exits 3');
like($r->{stdout}, qr/problem: repository "one".*backup "20000101T000000Z" is not in the repository/,
	'and names it');

# --- scenarios ------------------------------------------------------------------------

my $m1 = manifest('one', $l1);
my $m2 = manifest('one', $l2);

# Each scenario damages one object and expects one problem per (backup, file) in
# $s{expect} (file undef: about the backup as a whole), all in repository $repo, of
# $kind; then puts the bytes back.
sub scenario
{
	my (%s) = @_;
	my $path = $s{path};
	my $saved = "$tmp/saved";
	copy($path, $saved) or die "copy: $!";
	$s{damage}->($path);

	# The scenarios are about what is reported: a damaged chunk stays where it is.
	$s{args} = [ '--no-quarantine', @{ $s{args} // [] } ];
	my $t = pgark('verify', @{ $s{args} });
	is($t->{rc}, 3, "$s{name}: verify exits 3");
	for my $e (@{ $s{expect} })
	{
		my ($b, $f) = @$e;
		my $file = defined $f ? qr/(?=.*file "\Q$f\E")/ : qr//;
		like($t->{stdout}, qr/^problem: repository "$s{repo}"(?=.*backup "$b")$file(?=.*$s{text})/m,
			"$s{name}: text names repository, backup $b" . (defined $f ? ", file $f" : ''));
	}
	my ($jrc, $j) = verify_json(@{ $s{args} // [] });
	is($jrc, 3, "$s{name}: --json exits 3");
	my @p = @{ $j->{problems} };
	is_deeply([ sort map { "$_->{backup} " . ($_->{file} // '-') } @p ],
		[ sort map { "$_->[0] " . ($_->[1] // '-') } @{ $s{expect} } ],
		"$s{name}: one problem per backup and file concerned") or diag(explain(\@p));
	for my $p (@p)
	{
		is($p->{repository}, $s{repo}, "$s{name}: in repository \"$s{repo}\"");
		is($p->{kind}, $s{kind}, "$s{name}: kind $s{kind}");
		is($p->{$_}, $s{fields}{$_}, "$s{name}: $_") for sort keys %{ $s{fields} // {} };
	}
	if ($s{clean_args})
	{
		my $c = pgark('verify', @{ $s{clean_args} });
		is($c->{rc}, 0, "$s{name}: verify @{ $s{clean_args} } is not concerned");
	}
	copy($saved, $path) or die "copy back: $!";
	is(pgark('verify')->{rc}, 0, "$s{name}: clean again once repaired");
}

# (backup, file) of every file naming chunk $c
sub users
{
	my ($c) = @_;
	my @u;
	for my $m ([ $l1, $m1 ], [ $l2, $m2 ])
	{
		for my $f (sort keys %{ $m->[1] })
		{
			push @u, [ $m->[0], $f ] if grep { $_ eq $c } @{ $m->[1]{$f}{chunks} // [] };
		}
	}
	return \@u;
}

# pg_control changes with every backup: its chunk belongs to the first backup alone.
my $ctl = $m1->{'global/pg_control'};
isnt($ctl->{chunks}[0], $m2->{'global/pg_control'}{chunks}[0], 'pg_control differs between the backups');
scenario(
	name => 'byte flipped in a chunk',
	repo => 'one',
	path => chunk_file('one', $ctl->{chunks}[0]),
	damage => sub {
		my ($path) = @_;
		open(my $fh, '+<:raw', $path) or die "open: $!";
		my $size = -s $fh;
		seek($fh, int($size / 2), 0);
		read($fh, my $b, 1);
		seek($fh, int($size / 2), 0);
		print $fh chr(ord($b) ^ 0x01);
		close($fh);
	},
	expect => [ [ $l1, 'global/pg_control' ] ],
	kind => 'damaged',
	text => qr/in chunk 0 of file/,
	fields => { file => 'global/pg_control', chunk => $ctl->{chunks}[0] },
	clean_args => [ '--backup', $l2 ]);

# PG_VERSION is the same in both backups and in every database folder: each file of
# each backup is named.
my $ver = $m1->{PG_VERSION}{chunks}[0];
is($ver, $m2->{PG_VERSION}{chunks}[0], 'PG_VERSION is one chunk shared by both backups');
my $vusers = users($ver);
cmp_ok(scalar(@$vusers), '>=', 4, 'and by the PG_VERSION of each database');
scenario(
	name => 'chunk deleted',
	repo => 'two',
	path => chunk_file('two', $ver),
	damage => sub { unlink($_[0]) or die "unlink: $!" },
	expect => $vusers,
	kind => 'missing',
	text => qr/chunk 0 \($ver\) is missing/,
	fields => { chunk => $ver });

# Every chunk present and sound, the sizes right, but a file's first two chunks listed
# the other way round: the file digest (SHA-256 over its chunks' SHA-256s) catches it.
my ($swap) = grep {
	my $c = $m1->{$_}{chunks} // [];
	@$c >= 2 && $c->[0] ne $c->[1]
} sort keys %$m1;
ok(defined $swap, 'a file of the first backup has two different chunks');
my $repo_cat = tool_bin('repo_cat');
my $m1_object = "backups/$l1/manifest.json";

# Rewrite the manifest line of $swap in the first backup (repository one) with $edit,
# which changes $_ and returns true.
sub edit_swap_line
{
	my ($edit) = @_;
	my $g = run_cmd([ $dump, $root{one}, 'main', 'get', $m1_object ]);
	die "get: $g->{stderr}" if $g->{rc};
	my $n = 0;
	my $text = join('', map {
		$n++ if index($_, "\"path\":\"$swap\"") >= 0 && $edit->();
		$_
	} split /^/, $g->{stdout});
	die "no line for $swap" unless $n == 1;
	my $w = run_cmd([ $repo_cat, $root{one}, 'main', '-w', $m1_object ], stdin => $text);
	die "put: $w->{stderr}" if $w->{rc};
}

scenario(
	name => 'chunks in the wrong order',
	repo => 'one',
	path => "$root{one}/main/$m1_object",
	damage => sub {
		my ($a, $b) = @{ $m1->{$swap}{chunks} }[ 0, 1 ];
		edit_swap_line(sub { s/"chunks":\["\Q$a\E","\Q$b\E"/"chunks":["$b","$a"/ });
	},
	expect => [ [ $l1, $swap ] ],
	kind => 'damaged',
	text => qr/its chunks have digest [0-9a-f]{64}, the manifest says/,
	fields => { file => $swap, object => $m1_object },
	clean_args => [ '--backup', $l2 ]);

# A line as an older pgark wrote it, with "sha256", the SHA-256 of the whole content:
# still verified, by that rule.
my $content = run_cmd([ $dump, $root{one}, 'main', 'cat', $l1, $swap ]);
is($content->{rc}, 0, "$swap reassembles") or diag($content->{stderr});
my $whole = sha256_hex($content->{stdout});
my $saved_manifest = "$tmp/saved_manifest";
copy("$root{one}/main/$m1_object", $saved_manifest) or die "copy: $!";
edit_swap_line(sub { s/"sha256_chunks":"[0-9a-f]{64}"/"sha256":"$whole"/ });
is(pgark('verify', '--backup', $l1)->{rc}, 0, 'a whole-content "sha256" of an older pgark verifies');
copy($saved_manifest, "$root{one}/main/$m1_object") or die "copy back: $!";
scenario(
	name => 'older line with a wrong sha256',
	repo => 'one',
	path => "$root{one}/main/$m1_object",
	damage => sub {
		edit_swap_line(sub { s/"sha256_chunks":"[0-9a-f]{64}"/"sha256":"@{['0' x 64]}"/ });
	},
	expect => [ [ $l1, $swap ] ],
	kind => 'damaged',
	text => qr/its chunks have SHA-256 \Q$whole\E, the manifest says 0{64}/,
	fields => { file => $swap, object => $m1_object },
	clean_args => [ '--backup', $l2 ]);

scenario(
	name => 'manifest truncated',
	repo => 'one',
	path => "$root{one}/main/backups/$l2/manifest.json",
	damage => sub { truncate($_[0], int((-s $_[0]) / 2)) or die "truncate: $!" },
	expect => [ [ $l2, undef ] ],
	kind => 'damaged',
	text => qr/manifest/,
	fields => { object => "backups/$l2/manifest.json", file => undef },
	clean_args => [ '--backup', $l1 ]);

scenario(
	name => 'backup_manifest truncated',
	repo => 'two',
	path => "$root{two}/main/backups/$l1/backup_manifest",
	damage => sub { truncate($_[0], 100) or die "truncate: $!" },
	expect => [ [ $l1, undef ] ],
	kind => 'damaged',
	text => qr/backup_manifest/,
	fields => { object => "backups/$l1/backup_manifest" });

# The last segment of the first backup's WAL: needed by it (and by continuity).
my $stop_seg = do {
	my ($h, $l) = map { hex } split m{/}, $b1->{stop_lsn};
	my $seg = int(($h * 2**32 + $l - 1) / 2**20);
	sprintf('%08X%08X%08X', 1, int($seg / 4096), $seg % 4096);
};
my $seg_path = "$root{one}/main/wal/00000001/$stop_seg";
ok(-f $seg_path, "the first backup's stop segment $stop_seg is archived");
my $saved_seg = "$tmp/saved_seg";
copy($seg_path, $saved_seg) or die;
unlink($seg_path) or die;
($rc, $doc) = verify_json('--backup', $l1);
is($rc, 3, 'segment of a backup\'s WAL deleted: verify --backup exits 3');
my @p = @{ $doc->{problems} };
is(scalar(@p), 1, 'one problem') or diag(explain(\@p));
is($p[0]{segment}, $stop_seg, 'naming the segment');
is($p[0]{backup}, $l1, 'and the backup');
like($p[0]{message}, qr/backup "\Q$l1\E" needs the WAL from its start to its stop/, 'saying why');
($rc, $doc) = verify_json();
is($rc, 3, 'the whole verify exits 3 too');
ok((grep { ($_->{segment} // '') eq $stop_seg && ($_->{backup} // '') eq $l1 } @{ $doc->{problems} }),
	'naming the backup that needs it');
copy($saved_seg, $seg_path) or die;

# WAL before the oldest backup is not needed: a gap there is no problem.
ok(-f "$root{two}/main/wal/00000001/$before_backups", "$before_backups (before the first backup) archived");
unlink("$root{two}/main/wal/00000001/$before_backups") or die;
$r = pgark('verify');
is($r->{rc}, 0, 'a segment missing before the oldest backup\'s start is no problem') or diag($r->{stdout});

$r = pgark('verify', '--backup', 'bad/label');
is($r->{rc}, 2, 'an invalid label is a usage error');

done_testing();
