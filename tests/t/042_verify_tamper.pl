# WAL high-water marks: what someone who can write the repositories but has no key can do
# to the WAL archive, and what verify and restore make of it. `pgark receive` archives a
# real server's WAL into two encrypted posix repositories, writing each timeline's mark
# (wal/<TLI>.hwm) after what it covers and keeping a record of the last one in the spool.
#  - the newest segments and the .partial removed from one repository: verify exits 3
#    naming them (before marks, the archive just looked shorter);
#  - the .partial replaced with an older copy of itself (valid: the key authenticates it):
#    verify exits 3, the copy holds fewer bytes than the mark says were archived;
#  - the newest WAL removed from both: restore to latest refuses (exit 3), nothing written;
#  - an older mark put back with the WAL after it removed: found through the spool's
#    record, and without it through the other repository; done alike in both repositories
#    with no record at hand, it is not detected (the limit docs/architecture.md states);
#  - repositories without marks (an older pgark) verify clean, saying so once each, and
#    the receiver writes the marks again;
#  - in an unencrypted repository the same removal is reported as missing WAL, in words
#    that claim no protection against tampering.
use strict;
use warnings;

use File::Copy qw(copy move);
use IPC::Run;
use JSON::PP;
use POSIX ();
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes ();
use PgarkTest;
use PgarkOps;

$ENV{PGARK_TEST_KDF_N} = 1024;    # cheap scrypt for the repositories created here

my $node = PostgreSQL::Test::Cluster->new('primary');
$node->init(allows_streaming => 1, extra => ['--wal-segsize=1']);
$node->append_conf('postgresql.conf', "autovacuum = off\n");
$node->start;
sub sql { return $node->safe_psql('postgres', $_[0]) }

my $tmp = PostgreSQL::Test::Utils::tempdir();
my $conninfo = 'host=' . $node->host . ' port=' . $node->port . ' dbname=postgres';

# A cluster "main" received into posix repositories one and two under $dir, with a
# partial copy every second and a 1 s rpo_target: two repositories' marks more than 2 s
# apart are more than the shipping lag allowed.
sub make_config
{
	my ($dir, $slot, $encrypted) = @_;
	mkdir($dir);
	mkdir("$dir/spool");
	my $yaml = "spool: $dir/spool\nlog: { level: info }\nrepos:\n"
	  . "  one: { type: posix, path: $dir/repo1 }\n"
	  . "  two: { type: posix, path: $dir/repo2 }\n";
	$yaml .= "encryption: { passphrase_file: " . write_file("$dir/pass", "tamper test\n") . " }\n"
	  if $encrypted;
	$yaml .= "clusters:\n  main:\n    conninfo: \"$conninfo\"\n    slot: $slot\n"
	  . "    create_slot: true\n    partial_upload_interval: 1s\n    rpo_target: 1s\n"
	  . "    repos: [one, two]\n    backup: { chunk_size: 64KiB }\n";
	return write_config($yaml, "$dir/pgark.yaml");
}

my $dir = "$tmp/enc";
my $config = make_config($dir, 'pgark_enc', 1);
my %root = (one => "$dir/repo1", two => "$dir/repo2");

sub pgark { return run_pgark([ '--config', $config, @_ ]) }
sub wal { my ($repo, $name) = @_; return "$root{$repo}/main/wal/00000001/$name" }
sub mark { my ($repo) = @_; return "$root{$repo}/main/wal/00000001.hwm" }
sub record_path { my ($repo) = @_; return "$dir/spool/main/hwm.$repo" }

# The receiver's record of the last mark it wrote to $repo (undef while none).
sub record
{
	my ($repo) = @_;
	return undef unless -f record_path($repo);
	return eval { decode_json(slurp_file(record_path($repo))) };
}

sub verify_json
{
	my $r = pgark('verify', '--json');
	my $doc = eval { decode_json($r->{stdout}) } // { problems => [] };
	return ($r, $doc->{problems});
}

# --- fill the repositories --------------------------------------------------------------

my $rx = ops_receiver_start($config);
ok(poll_until(sub { sql("SELECT count(*) FROM pg_replication_slots WHERE active") eq '1' }),
	'receiver streams through its slot');
my $b = pgark('backup', '--no-progress');
is($b->{rc}, 0, 'a backup to restore from') or diag($b->{stderr});
sql('CREATE TABLE t (id int, pad text)');

# verify while the receiver ships a new segment every few hundred milliseconds: the marks
# verify reads are newer than the listing it made, and name no missing WAL for that. The
# writer goes on until the four runs are done (however long they take), and each run
# starts once the receiver has shipped a segment since the last one.
my $busy = "$tmp/writer-busy";
write_file($busy, '');
my $writer = fork() // die "fork: $!";
if ($writer == 0)
{
	# (stops by itself too, should this test die before it removes the file)
	my $until = Time::HiRes::time() + $PostgreSQL::Test::Utils::timeout_default;
	while (-e $busy && Time::HiRes::time() < $until)
	{
		$node->safe_psql('postgres',
			"INSERT INTO t SELECT g, 'busy' FROM generate_series(1, 500) g; SELECT pg_switch_wal()");
	}
	POSIX::_exit(0);
}
for my $i (1 .. 4)
{
	my $seen = record('one');
	my $seq = $seen ? $seen->{seq} : -1;
	ok(poll_until(sub { my $r = record('one'); $r && $r->{seq} > $seq }),
		"the receiver ships while the writer writes ($i)");
	my $during = pgark('verify');
	is($during->{rc}, 0, "verify while the receiver ships ($i): exit 0") or diag($during->{stdout});
}
unlink($busy);
waitpid($writer, 0);

# The same race made certain: verify lists the archive while a partial copy of the segment
# being filled is there, and is paused (PGARK_TEST_PAUSE_AFTER_WAL_LISTING) until the
# receiver has stored that segment complete and removed the partial copy and its index. The
# partial copy gone since the listing is no problem: the complete segment is there.
sql("INSERT INTO t SELECT g, 'listed' FROM generate_series(1, 100) g");
my $listed = sql('SELECT pg_walfile_name(pg_current_wal_lsn())');
ok( poll_until(
		sub {
			my $r = record('one');
			return $r && $r->{partial} && $r->{partial}{segment} eq $listed && -f wal('one', "$listed.partial");
		}),
	"a partial copy of $listed is in repository one");
{
	my $pause = "$tmp/verify-paused";
	my ($out, $err) = ('', '');
	my $h = IPC::Run::start([ pgark_bin(), '--config', $config, 'verify' ],
		init => sub { $ENV{PGARK_TEST_PAUSE_AFTER_WAL_LISTING} = $pause },
		'<', \undef, '>', \$out, '2>', \$err, IPC::Run::timeout($PostgreSQL::Test::Utils::timeout_default));
	ok(poll_until(sub { -e $pause || !$h->pumpable }), 'verify paused after its listing') or diag($err);
	sql('SELECT pg_switch_wal()');
	ok( poll_until(
			sub {
				return !grep { -e wal($_, "$listed.partial") || -e wal($_, "$listed.partial.idx") || !-f wal($_, $listed) }
				  qw(one two);
			}),
		"the receiver stores $listed complete and removes its partial copy while verify waits");
	unlink($pause);
	eval { $h->finish };
	is($h->result(0), 0, 'verify: a partial copy removed since the listing is no problem')
	  or diag("$out\n$err");
}

my @segs;
sub segment
{
	sql("INSERT INTO t SELECT g, repeat('x', 200) FROM generate_series(1, 2000) g");
	push @segs, sql('SELECT pg_walfile_name(pg_current_wal_lsn())');
	sql('SELECT pg_switch_wal()');
}

# Both repositories' marks cover segment $seg (the records say what was written).
sub marked
{
	my ($seg) = @_;
	return poll_until(
		sub {
			my @r = map { record($_) } qw(one two);
			return !grep { !$_ || ($_->{segment} // '') lt $seg } @r;
		});
}

segment() for 1 .. 3;
ok(marked($segs[-1]), "both marks cover $segs[-1]");
# The marks as they are now, to be put back later: taken when both say the same and
# neither changed while they were copied.
my %old;
ok( poll_until(
		sub {
			my %r = map { ($_ => record($_)) } qw(one two);
			return 0 if $r{one}{end_lsn} ne $r{two}{end_lsn};
			copy(mark($_), "$tmp/old_mark.$_") or die "copy: $!" for qw(one two);
			%old = map { ($_ => record($_)) } qw(one two);
			return $old{one}{seq} == $r{one}{seq} && $old{two}{seq} == $r{two}{seq};
		}),
	'both marks kept while they agree');
my $old_time = $old{one}{time_us} > $old{two}{time_us} ? $old{one}{time_us} : $old{two}{time_us};

segment() for 1 .. 3;
ok(marked($segs[-1]), "both marks cover $segs[-1]");

# A first partial copy of the segment being filled, kept; then more WAL in it until the
# mark says a longer copy was archived, written more than 2 s after the marks kept above.
sql("INSERT INTO t SELECT g, 'partial' FROM generate_series(1, 100) g");
my $cur = sql('SELECT pg_walfile_name(pg_current_wal_lsn())');
ok(poll_until(sub { my $r = record('one'); $r && $r->{partial} && $r->{partial}{segment} eq $cur }),
	"a partial copy of $cur is archived and marked");
copy(wal('one', "$cur.partial"), "$tmp/old_partial") or die "copy: $!";
copy(wal('one', "$cur.partial.idx"), "$tmp/old_partial.idx") or die "copy: $!";
my $old_bytes = record('one')->{partial}{bytes};
ok( poll_until(
		sub {
			sql("INSERT INTO t SELECT g, 'more' FROM generate_series(1, 100) g");
			my @r = map { record($_) } qw(one two);
			return !grep {
				!$_->{partial}
				  || $_->{partial}{bytes} <= $old_bytes
				  || $_->{time_us} < $old_time + 3_000_000
			} @r;
		}),
	'a longer partial copy is archived and marked in both, seconds later');
is(ops_receiver_stop($rx), 0, 'receiver stops cleanly');
my ($final, $final_two) = (record('one'), record('two'));
note("marks: old at segment $segs[2], final " . encode_json($final));

my ($r, $p) = verify_json();
is($r->{rc}, 0, 'the untouched archive verifies clean') or diag($r->{stdout});
my $doc = decode_json($r->{stdout});
is($_->{high_water_marks}, 1, "repository $_->{name}: its mark was read") for @{ $doc->{repositories} };

# --- scenarios --------------------------------------------------------------------------

# Move files aside (to put them back after), and put them back.
my %aside;
sub take
{
	for my $path (@_)
	{
		(my $to = $path) =~ s{/}{_}g;
		move($path, "$tmp/aside$to") or die "move $path: $!";
		$aside{$path} = "$tmp/aside$to";
	}
}
sub put_back { move($aside{$_}, $_) or die "move back $_: $!" for keys %aside; %aside = () }

# Every WAL object of $repo past what mark record $rec covers (its segment, and its
# partial copy if it names one): what removing the newest WAL means.
sub wal_past
{
	my ($repo, $rec) = @_;
	my $dirname = "$root{$repo}/main/wal/00000001";
	opendir(my $dh, $dirname) or die "opendir: $!";
	my @names = grep { /^[0-9A-F]{24}/ } readdir($dh);
	closedir($dh);
	my @past;
	for my $name (sort @names)
	{
		my ($base, $suffix) = $name =~ /^([0-9A-F]{24})(.*)$/;
		my $partial = $suffix =~ /^\.partial/;
		my $last = $partial && $rec->{partial} ? $rec->{partial}{segment} : $rec->{segment};
		push @past, "$dirname/$name" if $base gt $last;
	}
	return @past;
}

# The newest segments and the partial copy gone from repository one.
take(wal_past('one', { segment => $segs[-3] }));
($r, $p) = verify_json();
is($r->{rc}, 3, 'newest WAL removed: verify exits 3');
is(scalar(@$p), 2, 'two problems') or diag(explain($p));
is_deeply([ map { $_->{repository} } @$p ], [ 'one', 'one' ], 'both in repository "one"');
like($p->[0]{message},
	qr/^segments $segs[-2] to $segs[-1] are missing \(2\): the WAL high-water mark of timeline 1 says the archive reached \S+ \(seq \d+, written .* by receive\)$/,
	'names the segments removed');
like($p->[1]{message},
	qr/^partial segment $cur\.partial is missing: the WAL high-water mark of timeline 1 says $final->{partial}{bytes} bytes of it were archived/,
	'and the partial copy');
$r = pgark('verify');
like($r->{stdout}, qr/problem: repository "one": segments $segs[-2] to $segs[-1] are missing/,
	'the text names repository and segments');
put_back();

# An older copy of the .partial (and its time index) put back in repository one.
copy(wal('one', "$cur.partial$_"), "$tmp/new_partial$_") or die for ('', '.idx');
copy("$tmp/old_partial$_", wal('one', "$cur.partial$_")) or die for ('', '.idx');
($r, $p) = verify_json();
is($r->{rc}, 3, 'older .partial put back: verify exits 3');
is(scalar(@$p), 1, 'one problem') or diag(explain($p));
is($p->[0]{repository}, 'one', 'in repository "one"');
is($p->[0]{segment}, $cur, 'naming the segment');
is($p->[0]{message},
	"partial segment $cur.partial holds $old_bytes bytes, fewer than the $final->{partial}{bytes} the WAL high-water mark of timeline 1 says were archived (seq $final->{seq}, written $final->{time} by receive): it is an older copy, and the WAL after it is missing",
	'saying it is an older copy');
copy("$tmp/new_partial$_", wal('one', "$cur.partial$_")) or die for ('', '.idx');
is(pgark('verify')->{rc}, 0, 'clean again with the newest copy back');

# Restore to latest when the newest WAL is gone from both repositories: refused.
take(map { wal_past($_, { segment => $segs[-2] }) } qw(one two));
my $pgdata = "$tmp/restored";
$r = pgark('restore', '--pgdata', $pgdata);
is($r->{rc}, 3, 'restore to latest short of the marks: exit 3');
like($r->{stderr},
	qr/the WAL archive of timeline 1 ends at \S+ \($segs[-2] in repository "(one|two)"\), before \S+, where the WAL high-water mark in repository "(one|two)" says it reached \(seq \d+, written .* by receive\): a restore to latest would stop short of WAL that was archived/,
	'saying where the archive ends and where it reached');
like($r->{stderr}, qr/hint: .*--target-lsn \S+ --target-action promote; nothing was changed/,
	'with the explicit way to accept the loss');
ok(!-e $pgdata || !glob("$pgdata/*"), 'nothing was written');
put_back();

# An older mark put back in repository one, with the WAL archived after it removed: the
# archive agrees with the mark, so only a second source shows it.
take(wal_past('one', $old{one}), mark('one'));
copy("$tmp/old_mark.one", mark('one')) or die;
($r, $p) = verify_json();
is($r->{rc}, 3, 'older mark put back: verify exits 3');
is(scalar(@$p), 1, 'one problem') or diag(explain($p));
is($p->[0]{repository}, 'one', 'in repository "one"');
is($p->[0]{kind}, 'hwm', 'a high-water mark problem');
like($p->[0]{message},
	qr/^the WAL high-water mark of timeline 1 is older than the last one the receiver wrote there: it reaches \S+ \(seq \d+, written .*\), the receiver's reached \S+ \(seq $final->{seq}, written .*; its record "\Q@{[record_path('one')]}\E"\): an older copy is in its place/,
	'found through the receiver\'s record in the spool');

# The spool's records out of reach (verify on another host, or the spool lost).
move(record_path($_), "$tmp/record.$_") or die for qw(one two);
($r, $p) = verify_json();
is($r->{rc}, 3, 'without the records: verify still exits 3');
is(scalar(@$p), 1, 'one problem') or diag(explain($p));
is($p->[0]{repository}, 'one', 'in repository "one"');
like($p->[0]{message},
	qr/^the WAL high-water mark of timeline 1 reaches \S+ \(seq \d+, .*\), but repository "two" reaches \S+ \(seq $final_two->{seq}, .*\), written \S+ later, more than the 2s of shipping lag allowed: WAL that "two" holds is missing here$/,
	'found through the other repository');

# Done alike in repository two, with no record at hand: nothing is left to tell. This is
# the limit docs/architecture.md states: a consistent rollback of every copy is not detected.
my %aside_one = %aside;
%aside = ();
take(wal_past('two', $old{two}), mark('two'));
copy("$tmp/old_mark.two", mark('two')) or die;
is(pgark('verify')->{rc}, 0, 'older marks and WAL put back in every repository, no record: not detected');
put_back();
%aside = %aside_one;
put_back();
move("$tmp/record.$_", record_path($_)) or die for qw(one two);
is(pgark('verify')->{rc}, 0, 'clean again once repaired');

# --- repositories without marks (an older pgark) ----------------------------------------

take(mark('one'), mark('two'), record_path('one'), record_path('two'));
$r = pgark('verify');
is($r->{rc}, 0, 'no marks anywhere: verify exits 0');
my @said = $r->{stderr} =~ /repository "(\w+)": timeline 1 has no WAL high-water mark/g;
is_deeply(\@said, [ 'one', 'two' ], 'and says so once for each repository');
%aside = ();
$rx = ops_receiver_start($config);
segment();
ok(poll_until(sub { -f mark('one') && -f mark('two') && record('one') && record('two') }),
	'the receiver writes the marks again');
is(ops_receiver_stop($rx), 0, 'receiver stops cleanly');
$r = pgark('verify');
is($r->{rc}, 0, 'and the archive verifies clean with them') or diag($r->{stdout});
unlike($r->{stderr}, qr/no WAL high-water mark/, 'without the notice');

# --- an unencrypted repository ----------------------------------------------------------

$dir = "$tmp/plain";
$config = make_config($dir, 'pgark_plain', 0);
%root = (one => "$dir/repo1", two => "$dir/repo2");
@segs = ();
$rx = ops_receiver_start($config);
ok(poll_until(sub { sql("SELECT active FROM pg_replication_slots WHERE slot_name = 'pgark_plain'") eq 't' }),
	'a receiver into unencrypted repositories streams');
segment() for 1 .. 3;
ok(marked($segs[-1]), "both marks cover $segs[-1]");
is(ops_receiver_stop($rx), 0, 'receiver stops cleanly');
is(pgark('verify')->{rc}, 0, 'the unencrypted archive verifies clean');
my $plain_final = record('one');
take(wal_past('one', { segment => $segs[0] }));
($r, $p) = verify_json();
is($r->{rc}, 3, 'unencrypted, newest segments removed: verify exits 3');
is(scalar(@$p), $plain_final->{partial} ? 2 : 1, 'the segments (and the partial copy marked)')
  or diag(explain($p));
like($p->[0]{message},
	qr/^segments $segs[1] to $segs[2] are missing \(2\): the WAL high-water mark of timeline 1 says the archive reached/,
	'naming the segments as missing WAL');
unlike(join("\n", map { $_->{message} } @$p), qr/tamper|forg|authentic|attack/i,
	'in words that claim no protection against tampering');
put_back();

done_testing();
