# pgark rotate-key --data-key: a new data key for the objects written from then on, on a
# cluster writing to [local (posix), offsite (s3, on an s3rver)] while a receiver ships.
#  - before: repo.json has format 1 and no "data_keys", every object a version 1 header;
#  - killed (SIGKILL) before it writes: repo.json byte for byte as it was; a re-run
#    makes key 1 in both repositories (format 2);
#  - the running receiver ships on under the key it holds (key 0) until a SIGHUP (or its
#    next look at repo.json, not within this test), then its new WAL names key 1; a backup after the rotation writes its new chunks and its
#    manifest under key 1 and shares the unchanged chunks with the first backup;
#  - verify (text and --json) says how many objects each key protects, on both stores;
#  - a header naming a key repo.json does not hold is an error naming the object;
#  - the first backup restores to a time whose WAL spans both keys, exact rows;
#  - expire drops a key no object uses (once replaced long enough ago), keeps one in use
#    and never the current one; a passphrase rotation afterwards re-wraps every key.
use strict;
use warnings;

use File::Find;
use HTTP::Tiny;
use IPC::Run;
use JSON::PP;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use PgarkTest;

$ENV{PGARK_TEST_KDF_N} = 1024;    # cheap scrypt for the repositories created here
# A writer looks at repo.json for newer keys every 5 minutes; here not within the test,
# so that the receiver holds key 0 until its reload (test_repo_keys tests the look).
$ENV{PGARK_TEST_KEY_RECHECK_S} = 3600;
my $tmp = PostgreSQL::Test::Utils::tempdir();
my $local = "$tmp/repo_local";

my $s3 = s3rver_start();
is(HTTP::Tiny->new(timeout => 10)->put("$s3->{endpoint}/pgark-dk")->{status},
	200, 'bucket created');

my $src = PostgreSQL::Test::Cluster->new('src');
$src->init(allows_streaming => 1, extra => ['--wal-segsize=1']);
$src->append_conf('postgresql.conf', "autovacuum = off\n");
$src->start;
sub sql { return $src->safe_psql('postgres', $_[0]) }

my $pass = write_file("$tmp/passphrase", "the passphrase\n");
my $newpass = write_file("$tmp/new-passphrase", "the next passphrase\n");

sub config_text
{
	my ($passfile) = @_;
	return local_offsite_config(
		spool => "$tmp/spool",
		local => $local,
		s3 => $s3,
		bucket => 'pgark-dk',
		passphrase_file => $passfile,
		conninfo => "host=@{[$src->host]} port=@{[$src->port]} dbname=postgres",
		extra => "    wal_fetch_read_ahead: 0\n    backup: { chunk_size: 64KiB }\n    retention: { full: 2 }\n");
}
my $config = write_config(config_text($pass), "$tmp/pgark.yaml");
my $cfg_new = write_config(config_text($newpass), "$tmp/new.yaml");
sub pgark { return run_pgark([ '--config', $config, @_ ]) }

# The key id an object's header names (0 for a version 1 header), from the bytes on disk.
sub key_of
{
	my ($rel) = @_;
	my $h = repo_cat($local, 'main', $rel, header => 1);
	die "no header for $rel: $h->{stderr}" if $h->{rc};
	my ($v, $k) = $h->{stdout} =~ /version=(\d+) .* key=(\d+)/ or die "header: $h->{stdout}";
	return "v$v/key$k";
}

sub repo_json { return decode_json(slurp_file("$local/main/repo.json")) }

mkdir("$tmp/spool") or die "mkdir: $!";
my $rx = receiver_start($config);
ok(poll_until(sub { -f "$local/main/repo.json" && receiver_log($rx) =~ /offsite/ }, 60),
	'the receiver created the repositories');
ok($src->poll_query_until('postgres',
	"SELECT count(*) = 1 FROM pg_stat_replication WHERE state = 'streaming'"),
	'the receiver streams');

sql('CREATE TABLE t (id int PRIMARY KEY, pad text)');
sql("INSERT INTO t SELECT g, md5(g::text) FROM generate_series(1, 20000) g");
my $r = pgark('backup', '--no-progress', '--json');
is($r->{rc}, 0, 'first backup, under key 0') or diag($r->{stderr});
my $label1 = decode_json($r->{stdout})->{label};

# Rows, a WAL switch, and both repositories holding the segment.
sub switch_and_wait
{
	my ($what, $from) = @_;
	sql("INSERT INTO t SELECT g, '$what' FROM generate_series($from, $from + 499) g");
	my $seg = sql('SELECT pg_walfile_name(pg_current_wal_lsn())');
	sql('SELECT pg_switch_wal()');
	ok(poll_until(sub {
		my $log = receiver_log($rx);
		$log =~ /shipped \Q$seg\E to repository "local"/
		  && $log =~ /shipped \Q$seg\E to repository "offsite"/ }, 120),
		"$what: segment $seg shipped to both repositories");
	return $seg;
}
my $seg0 = switch_and_wait('before', 30000);
is(key_of("wal/00000001/$seg0"), 'v1/key0', 'before: a WAL segment has a version 1 header');
my $j = repo_json();
is($j->{format}, 1, 'before: repo.json has format 1');
ok(!exists $j->{encryption}{data_keys}, 'before: and no "data_keys"');

# --- killed before it writes, then run again -------------------------------------------
my $json_before = slurp_file("$local/main/repo.json");
{
	my $flag = "$tmp/pause-rekey";
	my ($out, $err) = ('', '');
	my $h = IPC::Run::start([ pgark_bin(), '--config', $config, 'rotate-key', '--data-key' ],
		'<', \undef, '>', \$out, '2>', \$err,
		init => sub { $ENV{PGARK_TEST_REKEY_PAUSE} = $flag });
	ok(poll_until(sub { -s $flag || !$h->pumpable }, 60), 'rotate-key --data-key paused')
	  or diag($err);
	chomp(my $pid = slurp_file($flag));
	kill('KILL', $pid);
	eval { $h->finish };
	is($h->full_result(0) & 127, 9, 'rotate-key --data-key SIGKILLed before writing');
	unlink($flag);
}
is(slurp_file("$local/main/repo.json"), $json_before, 'killed: repo.json is as it was');

$r = pgark('rotate-key', '--data-key');
is($r->{rc}, 0, 'rotate-key --data-key run again') or diag($r->{stderr});
like($r->{stdout}, qr/^repository "local": new data key 1, current from now on$/m, 'local: key 1');
like($r->{stdout}, qr/^repository "offsite": new data key 1, current from now on$/m,
	'offsite: key 1');
like($r->{stdout}, qr/reload every receiver \(SIGHUP\)/, 'it says to reload the receivers');
$j = repo_json();
is($j->{format}, 2, 'after: repo.json has format 2');
is_deeply([ map { $_->{id} } @{ $j->{encryption}{data_keys} } ], [1], 'after: data_keys lists key 1');

$r = pgark('rotate-key', '--data-key', '--new-passphrase-file', $newpass);
is($r->{rc}, 2, '--data-key with --new-passphrase-file is a usage error');
like($r->{stderr}, qr/rotate-key takes --data-key or --new-passphrase-file, not both/,
	'saying so');

# The receiver holds key 0 until it is reloaded.
my $seg1 = switch_and_wait('held', 31000);
is(key_of("wal/00000001/$seg1"), 'v1/key0', 'before the reload: the receiver ships under key 0');
my $reloads = () = receiver_log($rx) =~ /configuration reloaded/g;
kill('HUP', $rx->{pid});
ok(poll_until(sub { my $c = () = receiver_log($rx) =~ /configuration reloaded/g; $c > $reloads }, 60),
	'the receiver reloaded');

# Rows committed under key 1, the time of the last of them: the restore target.
my $seg2 = switch_and_wait('after', 32000);
is(key_of("wal/00000001/$seg2"), 'v2/key1', 'after the reload: new WAL names key 1');
my $target = sql('SELECT now()');
my $want = sql("SELECT count(*) || ':' || md5(string_agg(id || ':' || pad, ',' ORDER BY id)) FROM t");
sql("SELECT pg_sleep(0.01)");
my $seg3 = switch_and_wait('too late', 33000);

sql("UPDATE t SET pad = 'changed' WHERE id <= 3000");
$r = pgark('backup', '--no-progress', '--json');
is($r->{rc}, 0, 'second backup, after the rotation') or diag($r->{stderr});
my $label2 = decode_json($r->{stdout})->{label};
is(key_of("backups/$label2/manifest.json"), 'v2/key1', 'its manifest names key 1');
my %keys;
find({ no_chdir => 1, wanted => sub {
	return unless -f $_ && m{/chunks/../[0-9a-f]{64}$};
	$keys{ key_of(substr($_, length("$local/main/"))) }++;
} }, "$local/main/chunks");
ok(($keys{'v2/key1'} // 0) > 0, 'new chunks name key 1 (' . ($keys{'v2/key1'} // 0) . ')');
ok(($keys{'v1/key0'} // 0) > 0,
	'unchanged chunks stay under key 0, shared by both backups (' . ($keys{'v1/key0'} // 0) . ')');

# --- verify: objects per key ----------------------------------------------------------
$r = pgark('verify', '--json');
is($r->{rc}, 0, 'verify passes') or diag($r->{stdout} . $r->{stderr});
my $v = decode_json($r->{stdout});
for my $repo (@{ $v->{repositories} })
{
	my %k = map { $_->{id} => $_ } @{ $repo->{data_keys} };
	ok($k{0}{objects} > 0 && !$k{0}{current}, "verify --json, $repo->{name}: key 0 protects $k{0}{objects}");
	ok($k{1}{objects} > 0 && $k{1}{current}, "verify --json, $repo->{name}: key 1 (current) protects $k{1}{objects}");
	is($repo->{objects_unknown_key}, 0, "verify --json, $repo->{name}: no object names an unknown key");
}
$r = pgark('verify');
like($r->{stdout}, qr/^repository "local": data key 0 protects \d+ objects$/m, 'verify text: key 0');
like($r->{stdout}, qr/^repository "offsite": data key 1 \(current\) protects \d+ objects$/m,
	'verify text: key 1, current');

# --- a header naming a key repo.json does not hold ------------------------------------
my $segpath = "$local/main/wal/00000001/$seg2";
my $orig = slurp_bytes($segpath);
my $bad = $orig;
substr($bad, 35, 1) = chr(9);
write_file($segpath, $bad);
$r = pgark('wal-fetch', '--repo', 'local', $seg2, "$tmp/fetched");
isnt($r->{rc}, 0, 'wal-fetch of a segment naming key 9 fails');
like($r->{stderr},
	qr/object "main\/wal\/00000001\/\Q$seg2\E" in repository "local" is damaged: its header names data key 9, which repo.json does not hold/,
	'naming the object and the key');
write_file($segpath, $orig);

# --- the first backup, to a time whose WAL spans both keys ----------------------------
my $node = PostgreSQL::Test::Cluster->new('restored');
$r = pgark('restore', '--pgdata', $node->data_dir, '--repo', 'offsite', '--backup', $label1,
	'--target-time', $target, '--target-action', 'promote');
is($r->{rc}, 0, 'restore of the first backup to a time after the rotation') or diag($r->{stderr});
$node->append_conf('postgresql.conf', "port = " . $node->port . "\narchive_mode = off\n");
$node->start;
ok($node->poll_query_until('postgres', 'SELECT NOT pg_is_in_recovery()'), 'recovery finished');
is($node->safe_psql('postgres',
	"SELECT count(*) || ':' || md5(string_agg(id || ':' || pad, ',' ORDER BY id)) FROM t"),
	$want, 'the rows at the target time, WAL under key 0 then key 1');
my $log = slurp_file($node->logfile);
like($log, qr/restored log file "\Q$seg2\E" from archive/, 'a segment under key 1 was replayed');
like($log, qr/restored log file "\Q$seg0\E" from archive/, 'and one under key 0');
$node->stop;

is(receiver_stop($rx)->{rc}, 0, 'receiver stops cleanly');

# --- expire: keys 2 and 3 made back to back, 2 never used ------------------------------
for my $id (2, 3)
{
	$r = pgark('rotate-key', '--data-key', '--repo', 'local');
	like($r->{stdout}, qr/^repository "local": new data key $id, current from now on$/m, "key $id");
}
$r = pgark('expire');
is($r->{rc}, 0, 'expire') or diag($r->{stderr});
like($r->{stdout}, qr/kept data key 2: replaced too recently/, 'a key replaced moments ago is kept');
$r = run_pgark([ '--config', $config, 'expire', '--json' ], env => { PGARK_TEST_KEY_GRACE_S => 0 });
is($r->{rc}, 0, 'expire, no grace') or diag($r->{stderr});
my ($ex) = grep { $_->{name} eq 'local' } @{ decode_json($r->{stdout})->{repositories} };
is_deeply($ex->{data_keys}{dropped}, [2], 'expire --json: key 2 dropped');
is_deeply([ map { "$_->{id}: $_->{reason}" } @{ $ex->{data_keys}{kept} } ],
	['1: objects are encrypted under it'], 'key 1 kept: in use; 0 and 3 not candidates');
is_deeply([ map { $_->{id} } @{ repo_json()->{encryption}{data_keys} } ], [1, 3],
	'repo.json: keys 1 and 3 remain');
$r = run_pgark([ '--config', $config, 'expire' ], env => { PGARK_TEST_KEY_GRACE_S => 0 });
unlike($r->{stdout}, qr/dropped data key/, 'a second expire drops nothing');

# --- the passphrase rotation re-wraps every key -----------------------------------------
$r = pgark('rotate-key', '--new-passphrase-file', $newpass);
is($r->{rc}, 0, 'passphrase rotated') or diag($r->{stderr});
is_deeply([ map { $_->{id} } @{ repo_json()->{encryption}{data_keys} } ], [1, 3],
	'every key still listed');
$r = run_pgark([ '--config', $cfg_new, 'verify', '--json' ]);
is($r->{rc}, 0, 'verify with the new passphrase reads objects of every key')
  or diag($r->{stdout} . $r->{stderr});

$src->stop;
done_testing();
