# pgark rotate-key: the data key of every repository wrapped under a new passphrase, on
# a cluster writing to [local (posix), offsite (s3, on an s3rver)], while a receiver
# ships.
#  - killed (SIGKILL) before its first write: both repositories open with the old
#    passphrase only, repo.json byte for byte as it was;
#  - killed after the first repository: "local" opens with the new passphrase only,
#    "offsite" with the old one only; never neither;
#  - run again: completes ("already" for local, rotated for offsite); the old passphrase
#    is refused with its error; no chunk, manifest or WAL object was rewritten;
#  - the receiver kept shipping with the key it holds, and after its passphrase file
#    holds the new passphrase and a SIGHUP, it reloads and ships on;
#  - with the new passphrase a restore from the S3 repository (backup and WAL) gives
#    the source's rows.
use strict;
use warnings;

use Digest::MD5;
use File::Find;
use HTTP::Tiny;
use IPC::Run;
use JSON::PP;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use PgarkTest;

$ENV{PGARK_TEST_KDF_N} = 1024;    # cheap scrypt for the repositories created here
my $tmp = PostgreSQL::Test::Utils::tempdir();
my $local = "$tmp/repo_local";

my $s3 = s3rver_start();
is(HTTP::Tiny->new(timeout => 10)->put("$s3->{endpoint}/pgark-rot")->{status},
	200, 'bucket created');

my $src = PostgreSQL::Test::Cluster->new('src');
$src->init(allows_streaming => 1);
$src->append_conf('postgresql.conf', "autovacuum = off\n");
$src->start;
sub sql { return $src->safe_psql('postgres', $_[0]) }

my $old = 'the old passphrase';
my $new = 'the new passphrase, rotated';
my $pass = write_file("$tmp/passphrase", "$old\n");
my $newfile = write_file("$tmp/new-passphrase", "$new\n");
my $oldcopy = write_file("$tmp/old-passphrase", "$old\n");

sub config_text
{
	my ($passfile) = @_;
	return local_offsite_config(
		spool => "$tmp/spool",
		local => $local,
		s3 => $s3,
		bucket => 'pgark-rot',
		passphrase_file => $passfile,
		conninfo => "host=@{[$src->host]} port=@{[$src->port]} dbname=postgres",
		extra => "    wal_fetch_read_ahead: 0\n    backup: { chunk_size: 256KiB }\n");
}
# The receiver's and the rotation's configuration: its passphrase file changes below.
my $config = write_config(config_text($pass), "$tmp/pgark.yaml");
my $cfg_old = write_config(config_text($oldcopy), "$tmp/old.yaml");
my $cfg_new = write_config(config_text($newfile), "$tmp/new.yaml");

mkdir("$tmp/spool") or die "mkdir: $!";
my $rx = receiver_start($config);
ok(poll_until(sub { -f "$local/main/repo.json" && receiver_log($rx) =~ /offsite/ }, 60),
	'the receiver created the repositories');
ok($src->poll_query_until('postgres',
	"SELECT count(*) = 1 FROM pg_stat_replication WHERE state = 'streaming'"),
	'the receiver streams');

sql('CREATE TABLE t (id int PRIMARY KEY, pad text)');
sql("INSERT INTO t SELECT g, md5(g::text) FROM generate_series(1, 20000) g");
my $r = run_pgark([ '--config', $config, 'backup', '--no-progress' ]);
is($r->{rc}, 0, 'backup into both repositories') or diag($r->{stderr});

# One more segment, shipped to both: what "opens" fetches below.
sub switch_and_wait
{
	my ($what) = @_;
	sql("INSERT INTO t SELECT g, '$what' FROM generate_series(1, 1000) g ON CONFLICT (id) DO UPDATE SET pad = EXCLUDED.pad");
	my $seg = sql('SELECT pg_walfile_name(pg_current_wal_lsn())');
	sql('SELECT pg_switch_wal()');
	ok(poll_until(sub {
		my $log = receiver_log($rx);
		$log =~ /shipped \Q$seg\E to repository "local"/
		  && $log =~ /shipped \Q$seg\E to repository "offsite"/ }, 120),
		"$what: segment $seg shipped to both repositories");
	return $seg;
}
my $seg = switch_and_wait('before');

# Whether repository $repo decrypts a WAL segment with configuration $cfg.
my $n = 0;
sub opens
{
	my ($cfg, $repo) = @_;
	my $dir = "$tmp/fetch" . $n++;
	mkdir($dir) or die "mkdir: $!";
	my $res = run_pgark([ '--config', $cfg, 'wal-fetch', '--repo', $repo, $seg, "$dir/seg" ]);
	return $res->{rc} == 0 && -s "$dir/seg" ? 1 : 0;
}
sub both_ways
{
	my ($repo) = @_;
	return (opens($cfg_old, $repo) ? 'old' : '') . '+' . (opens($cfg_new, $repo) ? 'new' : '');
}
is(both_ways('local'), 'old+', 'before: local opens with the old passphrase only');
is(both_ways('offsite'), 'old+', 'before: offsite opens with the old passphrase only');

# Every object of the local repository but repo.json and what the receiver writes
# meanwhile (partial copies, its records): none may be rewritten by the rotation.
sub digests
{
	my %d;
	find({ no_chdir => 1, wanted => sub {
		return unless -f $_;
		my $rel = substr($_, length("$local/main/"));
		# what the running receiver rewrites as WAL arrives (partial copies, their index,
		# the high-water mark): not the rotation's doing
		return if $rel eq 'repo.json' || $rel =~ /\.partial(\.idx)?$|\.hwm$|^receiver\//;
		open(my $fh, '<:raw', $_) or die "$_: $!";
		$d{$rel} = Digest::MD5->new->addfile($fh)->hexdigest;
	} }, "$local/main");
	return \%d;
}
my $before = digests();
my $json_before = slurp_file("$local/main/repo.json");

# Start rotate-key paused at hook $var, SIGKILL it there.
sub kill_at
{
	my ($var) = @_;
	my $flag = "$tmp/pause-$var";
	my ($out, $err) = ('', '');
	my $h = IPC::Run::start([ pgark_bin(), '--config', $config, 'rotate-key',
		'--new-passphrase-file', $newfile ], '<', \undef, '>', \$out, '2>', \$err,
		init => sub { $ENV{$var} = $flag });
	ok(poll_until(sub { -s $flag || !$h->pumpable }, 60), "rotate-key paused at $var")
	  or diag($err);
	chomp(my $pid = slurp_file($flag));
	kill('KILL', $pid);
	eval { $h->finish };
	is($h->full_result(0) & 127, 9, "rotate-key SIGKILLed at $var");
	unlink($flag);
}

kill_at('PGARK_TEST_REKEY_PAUSE');
is(slurp_file("$local/main/repo.json"), $json_before,
	'killed before its first write: repo.json is as it was');
is(both_ways('local'), 'old+', 'killed before writing: local opens with the old passphrase only');
is(both_ways('offsite'), 'old+', 'killed before writing: offsite opens with the old passphrase only');

kill_at('PGARK_TEST_REKEY_PAUSE_NEXT');
is(both_ways('local'), '+new', 'killed after local: local opens with the new passphrase only');
is(both_ways('offsite'), 'old+', 'killed after local: offsite opens with the old passphrase only');

$r = run_pgark([ '--config', $config, 'rotate-key', '--new-passphrase-file', $newfile ]);
is($r->{rc}, 0, 'rotate-key run again completes') or diag($r->{stderr});
like($r->{stdout}, qr/^repository "local": already under the new passphrase$/m,
	'the re-run leaves local alone');
like($r->{stdout}, qr/^repository "offsite": passphrase rotated$/m, 'the re-run rotates offsite');
# The key cache (encryption.key_cache, on by default) held the old passphrase's key for
# offsite (the wal-fetch runs above): the rotation removed it.
ok(!-e "$tmp/spool/main/kek.offsite", 'the rotation removed the key cache entry of offsite');
is(both_ways('local'), '+new', 'after: local opens with the new passphrase only');
is(both_ways('offsite'), '+new', 'after: offsite opens with the new passphrase only');
ok(-s "$tmp/spool/main/kek.offsite" && ((stat("$tmp/spool/main/kek.offsite"))[2] & 07777) == 0600,
	'opening with the new passphrase cached its key again, in a 0600 file');

$r = run_pgark([ '--config', $cfg_old, 'info' ]);
like($r->{stdout}, qr/repository "local" \(posix\)\n  wrong passphrase: it does not unlock the repository encryption key/,
	'the old passphrase is refused with a clear error (local)');
like($r->{stdout}, qr/repository "offsite" \(s3\)\n  wrong passphrase: it does not unlock the repository encryption key/,
	'the old passphrase is refused with a clear error (offsite)');

$r = run_pgark([ '--config', $cfg_old, 'rotate-key' ],
	env => { PGARK_NEW_PASSPHRASE => 'a third one' });
is($r->{rc}, 1, 'rotate-key whose configured passphrase is the stale one fails');
like($r->{stderr},
	qr/neither the configured passphrase nor the new one unlocks the encryption key of repository "local"/,
	'naming the repository neither passphrase opens');
is(both_ways('local'), '+new', 'that failed run changed nothing');

my $after = digests();
my @rewritten = grep { exists $after->{$_} && $after->{$_} ne $before->{$_} } sort keys %$before;
is_deeply(\@rewritten, [], 'no object but repo.json was rewritten');
ok(scalar(grep { /^chunks\// } keys %$before) > 0, 'chunks were among those compared');
isnt(slurp_file("$local/main/repo.json"), $json_before, 'repo.json was replaced');

# The receiver still holds the unwrapped key: it ships on.
my $seg2 = switch_and_wait('during');
unlike(receiver_log($rx), qr/wrong passphrase/, 'the receiver reported no key problem');

# Its passphrase file now holds the new passphrase; a reload opens with it.
write_file($pass, "$new\n");
my $reloads = () = receiver_log($rx) =~ /configuration reloaded/g;
kill('HUP', $rx->{pid});
ok(poll_until(sub { my $c = () = receiver_log($rx) =~ /configuration reloaded/g; $c > $reloads }, 60),
	'the receiver reloaded its configuration');
my $seg3 = switch_and_wait('after reload');
ok(receiver_alive($rx), 'the receiver runs on after the reload');
unlike(receiver_log($rx), qr/wrong passphrase/, 'and it opened every repository with the new passphrase');

my $want = sql("SELECT count(*) || ':' || md5(string_agg(id || ':' || pad, ',' ORDER BY id)) FROM t");
is(receiver_stop($rx)->{rc}, 0, 'receiver stops cleanly');

# The new passphrase restores the backup from S3 and fetches every segment from it.
my $node = PostgreSQL::Test::Cluster->new('restored');
$r = run_pgark([ '--config', $cfg_new, 'restore', '--pgdata', $node->data_dir, '--repo', 'offsite',
	'--start', '--wait', '--port', $node->port ]);
is($r->{rc}, 0, 'restore from offsite with the new passphrase') or diag($r->{stderr});
$node->_update_pid(1);
is($node->safe_psql('postgres',
	"SELECT count(*) || ':' || md5(string_agg(id || ':' || pad, ',' ORDER BY id)) FROM t"),
	$want, 'the restored rows equal the source\'s');
my $log = slurp_file($node->data_dir . '/pgark-start.log');
like($log, qr/restored log file "\Q$seg3\E" from archive/, 'the last segment came from wal-fetch');
$node->stop;
$src->stop;
done_testing();
