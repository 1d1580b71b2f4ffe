# Damage is contained (issue 19, item 8): a chunk shared by three backups is damaged in
# one of two posix repositories.
#  - verify exits 3 and names every backup and file that uses the chunk (not only the
#    first backup read), says the other repository holds it sound, that no backup of the
#    damaged repository is free of problems and which one of the other is, and that a new
#    backup is what to take (text and --json);
#  - --no-quarantine leaves the chunk where it is; by default it is moved to
#    quarantine/<run>/chunks/<aa>/<name> with a reason record, so the next backup stores it
#    again instead of reusing it: verify is clean after that backup, and a restore of it
#    from the damaged repository alone has every row.
use strict;
use warnings;

use File::Copy qw(copy);
use JSON::PP;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use PgarkTest;
use PgarkOps;

my $setup = ops_setup(dbname => 'postgres', extra => "    backup: { chunk_size: 64KiB }\n    retention: { full: 10 }\n");
my ($node, $tmp, $config) = @$setup{qw(node tmp config)};
my %root = %{ $setup->{root} };

sub sql { return $node->safe_psql('postgres', $_[0]) }
my $dump = tool_bin('repo_dump');

sub pgark { return run_pgark([ '--config', $config, @_ ]) }

sub backup
{
	my ($label) = @_;
	my $r = pgark('backup', '--no-progress', '--json', '--label', $label);
	is($r->{rc}, 0, "backup $label exits 0") or diag($r->{stderr});
	return $label;
}

# Run $work with the receiver archiving into both repositories, until both hold the
# segment in use when it returns.
sub with_receiver
{
	my ($work) = @_;
	my $rx = ops_receiver_start($config);
	ok(poll_until(sub { sql("SELECT count(*) FROM pg_replication_slots WHERE active") eq '1' }),
		'receiver streams through its slot');
	$work->();
	my $last = sql('SELECT pg_walfile_name(pg_current_wal_lsn())');
	sql('SELECT pg_switch_wal()');
	ok( poll_until(
			sub {
				-f "$root{one}/main/wal/00000001/$last"
				  && -f "$root{two}/main/wal/00000001/$last";
			}),
		"both repositories hold $last");
	is(ops_receiver_stop($rx), 0, 'receiver stops cleanly');
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

sub verify_json
{
	my $r = pgark('verify', '--json', @_);
	my $doc = eval { decode_json($r->{stdout}) };
	ok($doc, 'verify --json prints JSON') or diag($r->{stdout}, $r->{stderr});
	return ($r, $doc // { problems => [], repositories => [], damaged_chunks => [] });
}

# --- three backups sharing PG_VERSION's chunk ------------------------------------------

sql('CREATE TABLE t AS SELECT g AS x FROM generate_series(1, 1000) g');
my @labels;
with_receiver(
	sub {
		push @labels, backup('b1');
		sql('INSERT INTO t SELECT g FROM generate_series(1001, 2000) g');
		push @labels, backup('b2');
		sql('INSERT INTO t SELECT g FROM generate_series(2001, 3000) g');
		push @labels, backup('b3');
	});
is(pgark('verify')->{rc}, 0, 'verify of the three backups exits 0');

my %m = map { ($_ => manifest('one', $_)) } @labels;
my $ver = $m{b1}{PG_VERSION}{chunks}[0];
my @users;
for my $l (@labels)
{
	push @users, map { "$l $_" }
	  grep { grep { $_ eq $ver } @{ $m{$l}{$_}{chunks} // [] } } sort keys %{ $m{$l} };
}
cmp_ok(scalar(@users), '>=', 9, 'PG_VERSION\'s chunk is used by several files of each backup');

my $cfile = chunk_file('one', $ver);
{
	open(my $fh, '+<:raw', $cfile) or die "open: $!";
	my $size = -s $fh;
	seek($fh, int($size / 2), 0);
	read($fh, my $b, 1);
	seek($fh, int($size / 2), 0);
	print $fh chr(ord($b) ^ 0x01);
	close($fh);
}

# --- verify names every backup and says what to do ----------------------------------------

my $r = pgark('verify', '--no-quarantine');
is($r->{rc}, 3, 'damaged shared chunk: verify exits 3');
like($r->{stdout}, qr/^repository "one": chunk $ver is damaged; backups using it: "b1", "b2" and "b3"$/m,
	'the chunk is named with every backup using it');
for my $u (@users)
{
	my ($l, $f) = split / /, $u, 2;
	like($r->{stdout}, qr/^problem: repository "one".*file "\Q$f\E" of backup "$l"/m, "problem names $l, $f");
}
like($r->{stdout}, qr/^hint: restore reads this chunk from repository "two", which holds it sound$/m,
	'the repository with a sound copy is named');
like($r->{stdout}, qr/^hint: no backup of repository "one" is free of problems$/m,
	'no backup of repository one is intact');
like($r->{stdout}, qr/^hint: take a new backup now/m, 'a new backup is advised');
ok(-f $cfile, '--no-quarantine: the chunk stays where it is');
ok(!-d "$root{one}/main/quarantine", '--no-quarantine: nothing is quarantined');

my ($j, $doc) = verify_json();
is($j->{rc}, 3, '--json: exit 3');
is_deeply([ sort map { "$_->{backup} $_->{file}" } @{ $doc->{problems} } ], [ sort @users ],
	'--json: one problem per backup and file using the chunk');
is_deeply([ map { $_->{kind} } @{ $doc->{problems} } ], [ ('damaged') x @users ], '--json: all of kind damaged');
is(scalar(@{ $doc->{damaged_chunks} }), 1, '--json: one damaged chunk');
my $dc = $doc->{damaged_chunks}[0];
is($dc->{chunk}, $ver, '--json: the chunk');
is($dc->{repository}, 'one', '--json: its repository');
is($dc->{kind}, 'damaged', '--json: damaged');
is_deeply($dc->{backups}, \@labels, '--json: every backup using it');
is_deeply($dc->{sound_in}, ['two'], '--json: sound in repository two');
like($dc->{quarantined} // '', qr{^quarantine/\d{8}T\d{6}Z/chunks/\Q@{[substr($ver, 0, 2)]}/$ver\E$},
	'--json: moved to quarantine/');
my %newest = map { ($_->{name} => $_->{newest_intact_backup}) } @{ $doc->{repositories} };
is($newest{one}, undef, '--json: repository one has no intact backup');
is($newest{two}, 'b3', '--json: repository two\'s newest intact backup is b3');

# --- quarantined ----------------------------------------------------------------------------

ok(!-e $cfile, 'the damaged chunk is gone from chunks/');
my $q = "$root{one}/main/$dc->{quarantined}";
ok(-f $q, 'and is in quarantine/');
my $reason = eval { decode_json(slurp_file("$q.reason.json")) } // {};
is($reason->{by}, 'verify', 'the reason record says verify moved it');
is($reason->{object}, "chunks/" . substr($ver, 0, 2) . "/$ver", 'and from where');
is_deeply($reason->{backups}, \@labels, 'and which backups use it');
like($reason->{reason} // '', qr/\S/, 'and why');
like($reason->{time} // '', qr/^\d{4}-\d\d-\d\d /, 'and when');

($j, $doc) = verify_json();
is($j->{rc}, 3, 'verify before a new backup: still exit 3');
is_deeply([ sort map { "$_->{backup} $_->{file} $_->{kind}" } @{ $doc->{problems} } ],
	[ sort map { "$_ missing" } @users ], 'every backup and file using it: chunk missing');

# expire does not trip on quarantine/, and leaves it alone.
$r = pgark('expire');
is($r->{rc}, 0, 'expire with a quarantine/ folder exits 0') or diag($r->{stderr});
ok(-f $q && -f "$q.reason.json", 'and keeps what is in quarantine');

# --- the next backup stores it again -----------------------------------------------------

with_receiver(
	sub {
		sql('INSERT INTO t SELECT g FROM generate_series(3001, 4000) g');
		backup('b4');
	});
ok(-f $cfile, 'the next backup stored the chunk again');
$r = pgark('verify');
is($r->{rc}, 0, 'verify is clean again') or diag($r->{stdout});
ok(-f $q, 'the quarantined copy is kept');

my $dst = PostgreSQL::Test::Cluster->new('restored');
my $pgdata = $dst->data_dir;
$r = pgark('restore', '--repo', 'one', '--backup', 'b4', '--pgdata', $pgdata, '--target', 'immediate',
	'--target-action', 'promote');
is($r->{rc}, 0, 'restore of the new backup from repository one alone') or diag($r->{stderr});
$dst->append_conf('postgresql.conf', 'port = ' . $dst->port . "\n");
$dst->start;
ok($dst->poll_query_until('postgres', 'SELECT NOT pg_is_in_recovery()'), 'the restored cluster promotes');
is($dst->safe_psql('postgres', 'SELECT count(*), max(x) FROM t'), '4000|4000', 'with every row');
$dst->stop;

# --- restore and wal-fetch read a damaged object from the other repository -----------------

sub flip
{
	my ($path) = @_;
	open(my $fh, '+<:raw', $path) or die "open $path: $!";
	my $size = -s $fh;
	seek($fh, int($size / 2), 0);
	read($fh, my $b, 1);
	seek($fh, int($size / 2), 0);
	print $fh chr(ord($b) ^ 0x01);
	close($fh);
}

my $tfile = sql("SELECT pg_relation_filepath('t')");
my $m4 = manifest('one', 'b4');
my $tchunk = $m4->{$tfile}{chunks}[0];
ok($tchunk, "table t ($tfile) has a chunk in backup b4");
my $seg;
with_receiver(
	sub {
		sql('SELECT pg_switch_wal()');
		sql('INSERT INTO t SELECT g FROM generate_series(4001, 5000) g');
		$seg = sql('SELECT pg_walfile_name(pg_current_wal_lsn())');
	});
my %saved = (chunk => slurp_bytes(chunk_file('one', $tchunk)),
	seg => slurp_bytes("$root{one}/main/wal/00000001/$seg"));
flip(chunk_file('one', $tchunk));
flip("$root{one}/main/wal/00000001/$seg");

my $wdir = "$tmp/walfetch";
mkdir($wdir) or die "mkdir: $!";
$r = pgark('wal-fetch', $seg, "$wdir/RECOVERYXLOG");
is($r->{rc}, 0, 'wal-fetch of a segment damaged in repository one exits 0') or diag($r->{stderr});
like($r->{stderr}, qr/repository "one".*\(served from another repository\)/, 'warning that it came from elsewhere');
my $good = run_cmd([ $dump, $root{two}, 'main', 'get', "wal/00000001/$seg" ]);
is($good->{rc}, 0, 'repository two\'s copy reads');
ok(slurp_bytes("$wdir/RECOVERYXLOG") eq $good->{stdout}, 'the segment served is repository two\'s');

my $dst2 = PostgreSQL::Test::Cluster->new('restored2');
$r = pgark('restore', '--backup', 'b4', '--pgdata', $dst2->data_dir);
is($r->{rc}, 0, 'restore with a chunk damaged in repository one exits 0') or diag($r->{stderr});
like($r->{stdout}, qr/restored backup "b4" from repository "one"/, 'from repository one');
like($r->{stderr}, qr/warn.*chunk $tchunk of file "\Q$tfile\E" read from repository "two": in repository "one" it is damaged/,
	'warning naming the chunk, the file and both repositories');
$dst2->append_conf('postgresql.conf', 'port = ' . $dst2->port . "\n");
$dst2->start;
ok($dst2->poll_query_until('postgres', 'SELECT NOT pg_is_in_recovery()'), 'the restored cluster promotes');
is($dst2->safe_psql('postgres', 'SELECT count(*), max(x) FROM t'), '5000|5000',
	'with every row, through the damaged segment');
$dst2->stop;
write_file(chunk_file('one', $tchunk), $saved{chunk}, 0600);
write_file("$root{one}/main/wal/00000001/$seg", $saved{seg}, 0600);

# --- no repository holds it sound: the newest backup that does not need it is named ---------

my $last = $m4->{$tfile}{chunks}[-1];
my $m3 = manifest('one', 'b3');
ok(!(grep { grep { $_ eq $last } @{ $m3->{$_}{chunks} // [] } } keys %$m3),
	'the last chunk of t in b4 is not in b3');
my %keep = map { ($_ => slurp_bytes(chunk_file($_, $last))) } qw(one two);
unlink(chunk_file($_, $last)) or die "unlink: $!" for qw(one two);
my $none = "$tmp/restore-none";
$r = pgark('restore', '--backup', 'b4', '--pgdata', $none);
is($r->{rc}, 3, 'a chunk in no repository: restore exits 3');
like($r->{stderr}, qr/chunk \d+ \($last\) of file "\Q$tfile\E" is in no repository of the cluster/,
	'naming the chunk and its file');
like($r->{stderr}, qr/hint: nothing was changed; the newest backup that does not use the damaged chunk is "b3"/,
	'before writing anything, naming the newest backup that does not need it');
ok(!-e $none, 'the data directory was not even created');

for my $repo (qw(one two))
{
	write_file(chunk_file($repo, $last), $keep{$repo}, 0600);
	flip(chunk_file($repo, $last));
}
$r = pgark('restore', '--backup', 'b4', '--pgdata', $none);
is($r->{rc}, 3, 'a chunk damaged in every repository: restore exits 3');
like($r->{stderr}, qr/\Q$last\E.*no other repository of the cluster holds it sound/s, 'saying no repository holds it sound');
like($r->{stderr}, qr/hint: .*the newest backup that does not use the damaged chunk is "b3"/,
	'naming the newest backup that does not need it');
write_file(chunk_file($_, $last), $keep{$_}, 0600) for qw(one two);

done_testing();
