# pgark backup against a real server: what lands in the repositories must be the data
# directory (same files and sizes as the server's own backup_manifest, every file
# reassembled from its chunks having the manifest's digest and the server's CRC-32C,
# the digest being the SHA-256 over the SHA-256s of its chunk-size pieces,
# chunks that reassemble to the source bytes), the WAL start..stop in every repository's
# archive, both repositories complete, a killed backup invisible and its chunks reused,
# storage incremental, and every way of failing clear.
use strict;
use warnings;

use JSON::PP;
use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Digest::SHA qw(sha256 sha256_hex);
use PgarkTest;

my $dump = tool_bin('repo_dump');
my $json = JSON::PP->new;

# The manifest's file digest ("sha256_chunks"), computed here from the bytes: SHA-256
# over the SHA-256 of each chunk_size piece, in order.
sub chunks_digest
{
	my ($bytes, $chunk) = @_;
	my $sums = '';
	for (my $off = 0; $off < length($bytes); $off += $chunk)
	{
		$sums .= sha256(substr($bytes, $off, $chunk));
	}
	return sha256_hex($sums);
}

my $node = PostgreSQL::Test::Cluster->new('primary');
$node->init(allows_streaming => 1, extra => ['--data-checksums']);
# No background writes between a backup and the checks that compare with PGDATA.
$node->append_conf('postgresql.conf', "autovacuum = off\n");
$node->start;
$node->command_ok([ 'pgbench', '-i', '-s', '2', '-q', 'postgres' ], 'pgbench -i -s 2');
$node->safe_psql('postgres', 'CHECKPOINT');

my $tmp = PostgreSQL::Test::Utils::tempdir();
my $host = $node->host;
my $port = $node->port;
my %repo = (a => "$tmp/repo_a", b => "$tmp/repo_b");

sub config
{
	my (%o) = @_;
	my $repos = $o{repos} // [ 'a', 'b' ];
	# 256 KiB chunks for the plain repositories (the incremental figure below depends
	# on it, see there); the encrypted ones keep the 1 MiB default.
	my $chunk = $o{passfile} ? '' : "    backup: { chunk_size: 256KiB }\n";
	my $yaml = "spool: $tmp/spool\nrepos:\n";
	$yaml .= "  $_: { type: posix, path: $tmp/repo_$_ }\n"
	  for ('a', 'b', 'e1', 'e2');
	$yaml .= "encryption: { passphrase_file: $o{passfile} }\n" if $o{passfile};
	$yaml .=
	    "clusters:\n  main:\n"
	  . "    conninfo: \"host=$host port="
	  . ($o{port} // $port)
	  . " dbname=postgres\"\n"
	  . "    repos: ["
	  . join(', ', @$repos) . "]\n"
	  . $chunk;
	return write_config($yaml, "$tmp/" . ($o{name} // 'pgark') . '.yaml');
}

my $conf = config();

sub backup
{
	my ($cf, @args) = @_;
	return run_pgark([ '--config', $cf, 'backup', '--no-progress', @args ],
		env => { PGARK_TEST_KDF_N => 1024 });
}

sub dump_repo
{
	my ($root, @args) = @_;
	my @p = ();
	if (ref $args[0] eq 'HASH') { @p = ('-p', shift(@args)->{pass}) }
	return run_cmd([ $dump, @p, $root, 'main', @args ]);
}

# manifest.json of a backup: (header, { path => line })
sub manifest
{
	my ($root, $label, @p) = @_;
	my $r = dump_repo($root, @p, 'get', "backups/$label/manifest.json");
	die "cannot read manifest of $label in $root: $r->{stderr}" if $r->{rc};
	my @lines = split /\n/, $r->{stdout};
	my $h = $json->decode(shift @lines);
	my %files = map { my $f = $json->decode($_); ($f->{path} => $f) } @lines;
	return ($h, \%files, $r->{stdout});
}

sub chunk_names
{
	my ($root) = @_;
	my %c;
	for my $d (glob("$root/main/chunks/*"))
	{
		for my $f (glob("$d/*"))
		{
			my ($n) = $f =~ m{/([0-9a-f]{64})$} or next;
			$c{$n} = (stat $f)[1];    # inode: a rewrite would change it
		}
	}
	return \%c;
}

sub segments
{
	my ($tli, $start, $stop) = @_;
	my @n;
	my $lsn = sub { my ($h, $l) = split m{/}, shift; return hex($h) * 2**32 + hex($l) };
	my ($s, $e) = ($lsn->($start), $lsn->($stop) - 1);
	for (my $seg = int($s / 2**24); $seg <= int($e / 2**24); $seg++)
	{
		push @n, sprintf('%08X%08X%08X', $tli, int($seg / 256), $seg % 256);
	}
	return @n;
}

# Files of backup $label in $root whose size or reassembled CRC-32C differ from the
# server's backup_manifest of that backup (the server computed those on the bytes it
# sent): (\@bad, number of files compared, the repo_dump sums result).
sub server_disagrees
{
	my ($root, $label, $files) = @_;
	my $sm = dump_repo($root, 'get', "backups/$label/backup_manifest");
	die "no backup_manifest for $label: $sm->{stderr}" if $sm->{rc};
	my %want = map { ($_->{Path} => $_) } @{ $json->decode($sm->{stdout})->{Files} };
	my $sums = dump_repo($root, 'sums', $label);
	my %crc = map { split /\t/ } split /\n/, $sums->{stdout};
	my @ours = grep { $files->{$_}{type} eq 'file' && $want{$_} } keys %$files;
	my @bad = grep {
		     $files->{$_}{size} != $want{$_}{Size}
		  || ($crc{$_} // '') ne $want{$_}{Checksum}
	} @ours;
	return (\@bad, scalar @ours, $sums);
}

sub info_backups
{
	my ($cf, $name) = @_;
	my $r = run_pgark([ '--config', $cf, 'info', '--json' ],
		env => { PGARK_TEST_KDF_N => 1024 });
	my $info = $json->decode($r->{stdout});
	my ($repo) = grep { $_->{name} eq $name } @{ $info->{repositories} };
	return [ map { $_->{label} } @{ $repo->{backups} // [] } ];
}

# --- a full backup into two repositories ---------------------------------------------

my $r = backup($conf, '--json');
is($r->{rc}, 0, 'backup exits 0') or diag($r->{stderr});
my $s1 = $json->decode($r->{stdout});
like($s1->{label}, qr/^\d{8}T\d{6}Z$/, 'label is the UTC start time');
like($s1->{$_}, qr{^[0-9A-F]+/[0-9A-F]+$}, "$_ is LSN text") for qw(start_lsn stop_lsn);
like($s1->{$_}, qr/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/, "$_ is UTC time")
  for qw(start_time stop_time);
is($s1->{timeline}, 1, 'timeline 1');
ok($s1->{duration_seconds} > 0, 'duration given');
is(scalar @{ $s1->{repositories} }, 2, 'both repositories reported');
ok($s1->{repositories}[0]{new_chunks} > 0 && $s1->{repositories}[0]{stored_bytes} > 0,
	'first backup writes chunks');
ok($s1->{logical_bytes} > 30_000_000, 'logical bytes cover the pgbench data');
my $label1 = $s1->{label};

for my $name ('a', 'b')
{
	my ($h, $files) = manifest($repo{$name}, $label1);
	is($h->{label}, $label1, "repo $name: manifest header names the backup");
	is($h->{start_lsn}, $s1->{start_lsn}, "repo $name: start LSN as reported");
	is($h->{stop_lsn}, $s1->{stop_lsn}, "repo $name: stop LSN as reported");
	is($h->{logical_bytes}, $s1->{logical_bytes}, "repo $name: logical bytes as reported");
	is($h->{chunk_size}, 262144, "repo $name: chunk size from the configuration");
	is($h->{system_identifier},
		$node->safe_psql('postgres', 'SELECT system_identifier FROM pg_control_system()'),
		"repo $name: system identifier");

	# The server's own manifest, stored verbatim, lists the same files with the same
	# sizes (WAL files are not in it; archive_status is not in ours), and its checksums
	# (CRC-32C: cheaper for the server than SHA-256) are those of the files reassembled
	# from the repository, which have the digest of our manifest (repo_dump sums).
	my $sm = dump_repo($repo{$name}, 'get', "backups/$label1/backup_manifest");
	is($sm->{rc}, 0, "repo $name: backup_manifest stored");
	my $server = $json->decode($sm->{stdout});
	my %want = map { ($_->{Path} => $_) } @{ $server->{Files} };
	my @ours = grep { $files->{$_}{type} eq 'file' && !m{^pg_wal/[^/]+$} } keys %$files;
	is_deeply([ sort @ours ], [ sort keys %want ],
		"repo $name: regular files equal the server manifest's");
	is_deeply([ sort grep { $_->{'Checksum-Algorithm'} ne 'CRC32C' } values %want ],
		[], "repo $name: the server's checksums are CRC-32C");
	my ($bad, undef, $sums) = server_disagrees($repo{$name}, $label1, $files);
	is($sums->{rc}, 0, "repo $name: every file reassembles to its digest")
	  or diag($sums->{stderr});
	is_deeply($bad, [], "repo $name: every size and checksum equals the server's");

	# WAL start..stop: in the manifest, and in the repository's archive.
	my @segs = segments(1, $s1->{start_lsn}, $s1->{stop_lsn});
	ok(@segs >= 1, 'backup spans at least one segment');
	for my $seg (@segs)
	{
		ok($files->{"pg_wal/$seg"}, "repo $name: pg_wal/$seg in the manifest");
		ok(-f "$repo{$name}/main/wal/00000001/$seg", "repo $name: $seg archived");
	}
	ok(-d "$repo{$name}/main/wal", "repo $name: WAL archive exists");
}
my (undef, undef, $text_a) = manifest($repo{a}, $label1);
my (undef, undef, $text_b) = manifest($repo{b}, $label1);
is($text_a, $text_b, 'unencrypted repositories get identical manifests');

# Files the idle cluster does not touch reassemble from chunks to the source bytes.
my $dboid = $node->safe_psql('postgres',
	"SELECT oid FROM pg_database WHERE datname = 'postgres'");
my @paths = ('PG_VERSION', map {
		"base/$dboid/"
		  . $node->safe_psql('postgres', "SELECT pg_relation_filenode('$_')")
} qw(pgbench_accounts pgbench_accounts_pkey pgbench_branches));
my $pgdata = $node->data_dir;
my (undef, $files_b) = manifest($repo{b}, $label1);
for my $p (@paths)
{
	my $c = dump_repo($repo{b}, 'cat', $label1, $p);
	is($c->{rc}, 0, "$p reassembles with its digest");
	ok($c->{stdout} eq slurp_file("$pgdata/$p"), "$p: chunks give the bytes in PGDATA");
	ok(!exists $files_b->{$p}{sha256}, "$p: no whole-content \"sha256\" in the manifest");
	is($files_b->{$p}{sha256_chunks},
		chunks_digest(slurp_file("$pgdata/$p"), 262144),
		"$p: the digest is the SHA-256 of its chunks' SHA-256s");
}

my $list = dump_repo($repo{a}, 'backups');
like($list->{stdout}, qr/^\Q$label1\E\t/m, 'the backup is listed');
is_deeply(info_backups($conf, 'a'), [$label1], 'info --json lists it');

# --- a label may be given once -----------------------------------------------------------

$r = backup($conf, '--label', $label1);
is($r->{rc}, 1, 'existing label: exit 1');
like($r->{stderr}, qr/backup "\Q$label1\E" already exists in repository "a"/,
	'existing label: says so');

# --- incremental in storage ---------------------------------------------------------------

# 5% of pgbench_accounts, contiguous: scattered rows (aid % 20 = 0) touch every 8 kB
# page, and no block-level store can keep that small (61% measured). At scale 2 the
# primary key index dominates what is stored (it compresses 6x, the table 30x) and its
# changed regions are whole chunks: 17% with 1 MiB chunks, 9% with 256 KiB.
$node->safe_psql('postgres',
	'UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid <= 10000; CHECKPOINT');
# The backups after the first are named: a time-based label has one-second resolution, and
# two backups in the same second would collide. The names sort after the first one's
# (digits before letters) and in the order they are taken, as info lists them.
$r = backup($conf, '--json', '--label', 'b2-incremental');
is($r->{rc}, 0, 'second backup exits 0') or diag($r->{stderr});
my $s2 = $json->decode($r->{stdout});
my ($st1, $st2) = ($s1->{repositories}[0]{stored_bytes}, $s2->{repositories}[0]{stored_bytes});
note(sprintf('stored: first %d, second %d (%.1f%%)', $st1, $st2, 100 * $st2 / $st1));
ok($st2 <= 0.15 * $st1, 'second backup stores at most 15% of the first one\'s bytes');
ok($s2->{repositories}[0]{reused_chunks} > $s2->{repositories}[0]{new_chunks},
	'most chunks are reused');
is($s2->{logical_bytes} >= $s1->{logical_bytes}, 1, 'yet the manifest is full');

# --- the fingerprint cache ---------------------------------------------------------------

# The second backup named the chunks unchanged since the first from the fingerprint cache
# (not hashed); the ones the UPDATE changed were hashed and stored. What it holds is still
# what the server sent: every file reassembles to the server's own CRC-32C.
my $cache = "$tmp/spool/main/backup-fingerprints";
is($s1->{unchanged_chunks}, 0, 'first backup: no fingerprint cache yet');
ok(-f $cache, 'the fingerprint cache is in the cluster\'s spool directory');
is((stat $cache)[2] & 0777, 0600, 'and readable by its owner only');
ok($s2->{unchanged_chunks} > $s2->{chunks} / 2,
	"second backup: $s2->{unchanged_chunks} of $s2->{chunks} chunks named from the cache");
ok($s2->{unchanged_chunks} + $s2->{repositories}[0]{new_chunks} <= $s2->{chunks},
	'the changed chunks were not taken from it');
for my $name ('a', 'b')
{
	my (undef, $files) = manifest($repo{$name}, $s2->{label});
	my ($bad, $n, $sums) = server_disagrees($repo{$name}, $s2->{label}, $files);
	is($sums->{rc}, 0, "second backup, repo $name: every file reassembles to its digest");
	ok($n > 900, "second backup, repo $name: $n files compared with the server's manifest");
	is_deeply($bad, [], "second backup, repo $name: every size and checksum equals the server's");
}

# A damaged cache is not used (said so), and the backup is whole all the same.
{
	open(my $cf, '+<', $cache) or die $!;
	binmode $cf;
	seek($cf, 300, 0);
	read($cf, my $byte, 1);
	seek($cf, 300, 0);
	print $cf chr(ord($byte) ^ 1);
	close($cf);
}
$node->safe_psql('postgres',
	'UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid > 190000; CHECKPOINT');
$r = backup($conf, '--json', '--label', 'b3-damaged-cache');
is($r->{rc}, 0, 'damaged fingerprint cache: backup exits 0') or diag($r->{stderr});
like(
	$r->{stderr},
	qr/warn +fingerprint cache "\Q$cache\E" not used: its checksum does not match its content; every chunk is hashed/,
	'damaged fingerprint cache: warned about');
my $s_damaged = $json->decode($r->{stdout});
is($s_damaged->{unchanged_chunks}, 0, 'damaged fingerprint cache: every chunk hashed');
{
	my (undef, $files) = manifest($repo{a}, $s_damaged->{label});
	my ($bad) = server_disagrees($repo{a}, $s_damaged->{label}, $files);
	is_deeply($bad, [], 'damaged fingerprint cache: the backup equals the server\'s files');
}

# A spool that cannot be created: no cache, said so, and the backup is done.
my $nospool = config(name => 'nospool');
{
	my $text = slurp_file($nospool);
	$text =~ s{^spool: .*$}{spool: $conf/spool}m;    # under a regular file
	write_config($text, $nospool);
}
$r = backup($nospool, '--json', '--label', 'b4-no-cache');
is($r->{rc}, 0, 'no fingerprint cache: backup exits 0') or diag($r->{stderr});
like(
	$r->{stderr},
	qr/info +no fingerprint cache, every chunk is hashed: could not create directory "\Q$conf\E\/spool": Not a directory/,
	'no fingerprint cache: says why');
my $s_nocache = $json->decode($r->{stdout});
is($s_nocache->{unchanged_chunks}, 0, 'no fingerprint cache: nothing taken from one');

# --- a backup killed half-way ---------------------------------------------------------

$node->safe_psql('postgres',
	"CREATE TABLE rnd AS SELECT g, md5(g::text) || md5((g * 7)::text) AS t "
	  . "FROM generate_series(1, 400000) g; CHECKPOINT");
my $before = chunk_names($repo{a});
my ($out, $err) = ('', '');
my $h;
{
	local $ENV{PGARK_TEST_MAX_RATE} = 4096;    # kB/s: slow enough to be caught mid-way
	$h = IPC::Run::start(
		[ pgark_bin(), '--config', $conf, 'backup', '--no-progress', '--label', 'b5-killed' ],
		'>', \$out, '2>', \$err);
}
my $grew = 0;
poll_until(
	sub {
		$grew = scalar(grep { !$before->{$_} } keys %{ chunk_names($repo{a}) });
		return $grew >= 6 || !$h->pumpable;
	});
ok($h->pumpable, 'backup still running when it is killed');
$h->signal('KILL');
eval { $h->finish };
ok($grew >= 6, "killed after it wrote new chunks ($grew)");
my $after_kill = chunk_names($repo{a});
my @orphans = grep { !$before->{$_} } keys %$after_kill;
is_deeply(info_backups($conf, 'a'), [ $label1, map { $_->{label} } $s2, $s_damaged, $s_nocache ],
	'killed backup is not listed by info');
my @dirs = map { m{/([^/]+)$} } glob("$repo{a}/main/backups/*");
my @incomplete = grep { !-f "$repo{a}/main/backups/$_/manifest.json" } @dirs;
ok(@incomplete <= 1, 'at most one incomplete backup directory, without manifest.json');

$r = backup($conf, '--json', '--label', 'b6-after-kill');
is($r->{rc}, 0, 'next backup exits 0') or diag($r->{stderr});
my $s4 = $json->decode($r->{stdout});
my (undef, $files4) = manifest($repo{a}, $s4->{label});
my %used = map { map { ($_ => 1) } @{ $_->{chunks} // [] } } values %$files4;
my $now = chunk_names($repo{a});
my @reused = grep { $used{$_} } @orphans;
# All but backup_label's and pg_control's chunk of the killed run are data of rnd.
ok(@reused >= @orphans - 2, scalar(@reused) . ' of ' . scalar(@orphans)
	  . ' chunks written by the killed backup are used by the next one');
ok(!grep({ $now->{$_} != $after_kill->{$_} } @reused),
	'and were not written again');
is($s4->{repositories}[0]{new_chunks},
	scalar(keys %$now) - scalar(keys %$after_kill),
	'new_chunks counts what was written');

# --- encrypted repositories -----------------------------------------------------------

my $pass = write_file("$tmp/pass", "correct horse battery staple\n");
my $econf = config(name => 'enc', repos => [ 'e1', 'e2' ], passfile => $pass);
$r = backup($econf, '--json');
is($r->{rc}, 0, 'encrypted backup exits 0') or diag($r->{stderr});
my $se = $json->decode($r->{stdout});
my ($he1, $fe1) = manifest("$tmp/repo_e1", $se->{label}, { pass => $pass });
my ($he2, $fe2) = manifest("$tmp/repo_e2", $se->{label}, { pass => $pass });
ok($he1->{encrypted} && $he2->{encrypted}, 'manifests say encrypted');
is($he1->{chunk_size}, 1048576, 'default chunk size 1 MiB');
my $acc = "base/$dboid/" . $node->safe_psql('postgres',
	"SELECT pg_relation_filenode('pgbench_accounts')");
like($fe1->{$acc}{sha256_chunks}, qr/^[0-9a-f]{64}$/, 'encrypted: a file digest');
is($fe1->{$acc}{sha256_chunks}, $fe2->{$acc}{sha256_chunks}, 'same file digest in both');
is($fe1->{$acc}{sha256_chunks},
	chunks_digest(slurp_file("$pgdata/$acc"), 1048576),
	'encrypted: the digest is of the plaintext chunks');
isnt($fe1->{$acc}{chunks}[0], $fe2->{$acc}{chunks}[0],
	'but each repository names chunks with its own key');
isnt($fe1->{PG_VERSION}{chunks}[0], sha256_hex(slurp_file("$pgdata/PG_VERSION")),
	'names are not plain SHA-256 digests');
for my $e ('e1', 'e2')
{
	my $c = dump_repo("$tmp/repo_$e", { pass => $pass }, 'cat', $se->{label}, $acc);
	is($c->{rc}, 0, "$e: file reassembles");
	ok($c->{stdout} eq slurp_file("$pgdata/$acc"), "$e: same bytes as PGDATA");
	my @segs = segments(1, $se->{start_lsn}, $se->{stop_lsn});
	ok(-f "$tmp/repo_$e/main/wal/00000001/$segs[-1]", "$e: stop segment archived");
}
is_deeply(info_backups($econf, 'e2'), [ $se->{label} ], 'info lists the encrypted backup');

my $wrong = write_file("$tmp/wrong", "not the passphrase\n");
$r = backup(config(name => 'wrong', repos => ['e1'], passfile => $wrong));
is($r->{rc}, 1, 'wrong passphrase: exit 1');
like($r->{stderr}, qr/wrong passphrase/, 'wrong passphrase: says so');

# --- a tablespace -------------------------------------------------------------------

my $tsdir = PostgreSQL::Test::Utils::tempdir();
$node->safe_psql('postgres',
	"CREATE TABLESPACE ts1 LOCATION '$tsdir'; "
	  . "CREATE TABLE in_ts TABLESPACE ts1 AS SELECT g FROM generate_series(1, 50000) g; "
	  . "CHECKPOINT");
my $tsoid = $node->safe_psql('postgres', "SELECT oid FROM pg_tablespace WHERE spcname = 'ts1'");
$r = backup($conf, '--json', '--label', 'b7-tablespace');
is($r->{rc}, 0, 'backup with a tablespace exits 0') or diag($r->{stderr});
my $st = $json->decode($r->{stdout});
my ($hts, $fts) = manifest($repo{a}, $st->{label});
is_deeply($hts->{tablespaces}, [ { oid => $tsoid + 0, location => $tsdir } ],
	'header lists the tablespace');
is($fts->{"pg_tblspc/$tsoid"}{type}, 'symlink', 'pg_tblspc/<oid> is a symlink');
is($fts->{"pg_tblspc/$tsoid"}{link}, $tsdir, 'to the tablespace location');
my $tsfile = $node->safe_psql('postgres', "SELECT pg_relation_filepath('in_ts')");
ok($fts->{$tsfile}, "table file listed as $tsfile");
my $server_ts = $json->decode(
	dump_repo($repo{a}, 'get', "backups/$st->{label}/backup_manifest")->{stdout});
my ($sfile) = grep { $_->{Path} eq $tsfile } @{ $server_ts->{Files} };
my %ts_crc = map { split /\t/ } split /\n/, dump_repo($repo{a}, 'sums', $st->{label})->{stdout};
is($ts_crc{$tsfile}, $sfile->{Checksum}, 'same checksum as the server manifest');
my $c = dump_repo($repo{a}, 'cat', $st->{label}, $tsfile);
ok($c->{rc} == 0 && $c->{stdout} eq slurp_file("$pgdata/$tsfile"),
	'tablespace file reassembles to the bytes on disk');

# --- bad conditions -----------------------------------------------------------------

$r = backup($conf, '--bogus');
is($r->{rc}, 2, 'unknown option: exit 2');
like($r->{stderr}, qr/unknown option "--bogus" for backup/, 'unknown option: named');
$r = backup($conf, '--checkpoint', 'soon');
is($r->{rc}, 2, 'bad --checkpoint: exit 2');
like($r->{stderr}, qr/invalid value "soon" for --checkpoint/, 'bad --checkpoint: named');
$r = backup($conf, '--label', '../x');
is($r->{rc}, 2, 'unsafe label: exit 2');

$r = backup(config(name => 'down', port => free_tcp_port()));
is($r->{rc}, 1, 'server unreachable: exit 1');
like($r->{stderr}, qr/while connecting to cluster "main"/, 'server unreachable: says so');

my $other = PostgreSQL::Test::Cluster->new('other');
$other->init(allows_streaming => 1);
$other->start;
my $before_other = dump_repo($repo{a}, 'backups')->{stdout};
$r = backup(config(name => 'other', port => $other->port));
is($r->{rc}, 1, 'repository of another system: exit 1');
like($r->{stderr}, qr/repository "a" belongs to database system \d+, but the server is system \d+/,
	'repository of another system: says so');
is(dump_repo($repo{a}, 'backups')->{stdout}, $before_other, 'and nothing was added');
$other->stop;

# A checksum failure reported by the server at the end fails the whole backup.
my $branches = $node->safe_psql('postgres', "SELECT pg_relation_filepath('pgbench_branches')");
$node->stop;
open(my $fh, '+<', "$pgdata/$branches") or die $!;
binmode $fh;
seek($fh, 4000, 0);
print $fh "garbage!" x 4;
close($fh);
$node->start;
my $count = () = dump_repo($repo{a}, 'backups')->{stdout} =~ /\n/g;
$r = backup($conf, '--label', 'b8-checksum-failure');
is($r->{rc}, 1, 'checksum failure: exit 1');
like($r->{stderr}, qr/checksum/, 'checksum failure: the server\'s message');
my $count2 = () = dump_repo($repo{a}, 'backups')->{stdout} =~ /\n/g;
is($count2, $count, 'checksum failure: no backup listed');

done_testing();
