# The test helpers themselves (tests/t/lib/PgarkTest.pm): running commands, config
# files, and the s3rver every S3 test relies on — started on a free port, storing
# and returning bytes, and gone after s3rver_stop.
use strict;
use warnings;

use HTTP::Tiny;
use IO::Socket::INET;
use PostgreSQL::Test::Utils;
use Test::More;
use PgarkTest;

my $r = run_cmd([ 'sh', '-c', 'echo out; echo err >&2; exit 3' ]);
is_deeply([ $r->{rc}, $r->{stdout}, $r->{stderr} ], [ 3, "out\n", "err\n" ],
	'run_cmd captures exit code, stdout and stderr');
$r = run_cmd([ 'sh', '-c', 'printf %s "$PGARK_T"' ], env => { PGARK_T => 'x y' });
is($r->{stdout}, 'x y', 'run_cmd passes environment');
ok(!exists $ENV{PGARK_T}, 'and restores it');

$r = run_pgark(['version']);
is($r->{rc}, 0, 'pgark binary runs');
like($r->{stdout}, qr/^pgark \d+\.\d+/, 'and reports its version');

my $conf = write_config("spool: /nonexistent\n");
is(slurp_file($conf), "spool: /nonexistent\n", 'write_config writes the text');
is((stat $conf)[2] & 07777, 0600, 'readable by the owner only');

my $s3 = s3rver_start();
like($s3->{endpoint}, qr{^http://127\.0\.0\.1:\d+$}, 's3rver endpoint on loopback');

my $http = HTTP::Tiny->new(timeout => 10);
my $base = $s3->{endpoint};
my $body = join('', map { chr($_ % 256) } 0 .. 70_000);
is($http->put("$base/bucket1")->{status}, 200, 'bucket created');
is($http->put("$base/bucket1/a/b.bin", { content => $body })->{status},
	200, 'object stored');
my $got = $http->get("$base/bucket1/a/b.bin");
is($got->{status}, 200, 'object read back');
ok($got->{content} eq $body, 'same bytes');
ok(-d $s3->{dir}, 'data lives in its own directory');

s3rver_stop($s3);
ok( !IO::Socket::INET->new(
		PeerAddr => '127.0.0.1',
		PeerPort => $s3->{port},
		Proto => 'tcp'),
	's3rver stopped: port closed');

done_testing();
