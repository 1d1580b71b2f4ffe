# Each storage failure is reported the same way by every command (issue 23, item 5):
# for a missing bucket, credentials the server refuses, an endpoint nobody listens on,
# and a posix repository that cannot be created or written, every command that touches
# the repository (check, info, backup, verify, expire, restore, wal-fetch) exits
# non-zero with the same key phrase and the same hint. And the figures of every
# command's --json are rounded to what they mean: seconds to the millisecond.
use strict;
use warnings;

use JSON::PP;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use PgarkTest;
use PgarkSwift;

my $tmp = PostgreSQL::Test::Utils::tempdir();
my $sw = swift_start(buckets => ['pgark-ok']);

my $src = PostgreSQL::Test::Cluster->new('src');
$src->init(allows_streaming => 1);
$src->append_conf('postgresql.conf', "autovacuum = off\n");
$src->start;

sub config_for
{
	my ($name, $repo) = @_;
	my $path = "$tmp/$name.yaml";
	write_config(<<"EOF", $path);
spool: $tmp/spool-$name
repos:
  store:
$repo
clusters:
  main:
    conninfo: "host=@{[$src->host]} port=@{[$src->port]} dbname=postgres"
    repos: [store]
    create_slot: true
    partial_upload_interval: 0s
    retention: { full: 1 }
EOF
	mkdir("$tmp/spool-$name");
	return $path;
}

sub swift_repo
{
	my (%o) = @_;
	return <<"EOF";
    type: s3
    endpoint: $sw->{endpoint}
    region: $sw->{region}
    ca_file: $sw->{ca_file}
    bucket: $o{bucket}
    access_key_id: "$sw->{access_key}"
    secret_access_key: "$o{secret}"
    retries: 0
EOF
}

my $dead = free_tcp_port();
mkdir("$tmp/ro", 0500) or die "mkdir: $!";
mkdir("$tmp/locked") or die "mkdir: $!";

# kind => [ config, key phrase, hint, commands ]
my @all = qw(check info backup verify expire restore wal-fetch);
my @kinds = (
	[
		'missing bucket',
		config_for('nobucket', swift_repo(bucket => 'pgark-none', secret => $sw->{secret_key})),
		qr/bucket "pgark-none" of repository "store" does not exist/,
		'create the bucket, or correct the bucket name of repository "store"',
		\@all
	],
	[
		'refused credentials',
		config_for('badkey', swift_repo(bucket => 'pgark-ok', secret => 'not-the-secret')),
		qr/in repository "store" refused: SignatureDoesNotMatch/,
		'check the access key id, secret and permissions of repository "store"',
		\@all
	],
	[
		'unreachable endpoint',
		config_for('dead',
			"    type: s3\n    endpoint: http://127.0.0.1:$dead\n    allow_http: true\n"
			  . "    bucket: pgark-ok\n    access_key_id: dead-key-id\n    secret_access_key: dead-secret\n    retries: 0\n"),
		qr/repository "store": (GET|PUT|HEAD|POST) "http:\/\/127\.0\.0\.1:$dead\/[^"]*" failed: .*Couldn't connect to server/,
		"check that the endpoint \"http://127.0.0.1:$dead\" of repository \"store\" is right and its server is up",
		\@all
	],
	[
		'posix path that cannot be created',
		config_for('nopath', "    type: posix\n    path: $tmp/ro/repo\n"),
		qr/could not create directory "\Q$tmp\E\/ro\/repo": Permission denied/,
		'give the user pgark runs as read and write access to the directory of repository "store", or correct its path',
		\@all
	],
);

for my $k (@kinds)
{
	my ($kind, $config, $phrase, $hint, $cmds) = @$k;
	for my $cmd (@$cmds)
	{
		my @args = ($cmd);
		push @args, '--no-progress' if $cmd eq 'backup';
		push @args, ('--pgdata', "$tmp/restored") if $cmd eq 'restore';
		push @args, ('000000010000000000000001', "$tmp/fetched") if $cmd eq 'wal-fetch';
		my $r = run_pgark([ '--config', $config, @args ]);
		note("$kind, $cmd: exit $r->{rc}\n$r->{stderr}");
		isnt($r->{rc}, 0, "$kind: $cmd fails");
		like($r->{stderr} . $r->{stdout}, $phrase, "$kind: $cmd says so");
		like($r->{stderr} . $r->{stdout}, qr/hint: \Q$hint\E/, "$kind: $cmd gives the hint");
		unlike($r->{stderr}, qr/take one with "pgark backup"/,
			"$kind: $cmd does not say a backup is missing") if $cmd eq 'restore';
	}
}

# A posix repository pgark may no longer write in: first a good one, whose --json
# figures are checked on the way, then made read-only.
my $good = config_for('good', "    type: posix\n    path: $tmp/locked\n");
$src->safe_psql('postgres', 'CREATE TABLE t AS SELECT g FROM generate_series(1, 10000) g');
# with a receiver, so that the RPO figures and the receiver's status are in the JSON
my $rx = receiver_start($good, args => [ '--log-level', 'detail' ]);
ok(poll_until(sub { (read_status("$tmp/spool-good/main") // {})->{connected} }),
	'the receiver streams into the good repository');
my $seg = $src->safe_psql('postgres', 'SELECT pg_walfile_name(pg_current_wal_lsn())');
$src->safe_psql('postgres', 'SELECT pg_switch_wal()');
ok(poll_until(sub { receiver_log($rx) =~ /shipped \Q$seg\E to repository "store"/ }),
	"it shipped $seg");
for my $cmd ([ 'backup', '--no-progress', '--json' ], ['info', '--json'], ['verify', '--json'],
	[ 'expire', '--json' ], [ 'check', '--json' ], [ 'report', '--json' ])
{
	my $r = run_pgark([ '--config', $good, @$cmd ]);
	ok($cmd->[0] eq 'check' || $cmd->[0] eq 'report' || $r->{rc} == 0, "$cmd->[0] --json on a good repository")
	  or diag($r->{stderr});
	ok(eval { decode_json($r->{stdout}); 1 }, "$cmd->[0] --json prints JSON") or diag($r->{stdout});
	# a number is a whole value on its line (JSON_INDENT): not a time inside a string
	my @long = $r->{stdout} =~ /(?:": |^\s*)(-?\d+\.\d{4,}(?:[eE][-+]?\d+)?),?$/mg;
	is("@long", '', "$cmd->[0] --json: no figure with more than 3 decimals");
}
is(receiver_stop($rx)->{rc}, 0, 'the receiver stops');
system('chmod', '-R', 'a-w', "$tmp/locked") == 0 or die "chmod: $?";
for my $cmd (qw(check backup))
{
	my $r = run_pgark([ '--config', $good, $cmd, $cmd eq 'backup' ? ('--no-progress') : () ]);
	note("read-only repository, $cmd: exit $r->{rc}\n$r->{stderr}");
	isnt($r->{rc}, 0, "read-only repository: $cmd fails");
	like($r->{stderr} . $r->{stdout}, qr/could not [a-z ]+ "\Q$tmp\E\/locked\/[^"]*": Permission denied/,
		"read-only repository: $cmd says so");
	like($r->{stderr} . $r->{stdout},
		qr/hint: give the user pgark runs as read and write access to the directory of repository "store", or correct its path/,
		"read-only repository: $cmd gives the hint");
}
system('chmod', '-R', 'u+w', "$tmp/locked", "$tmp/ro");

done_testing();
