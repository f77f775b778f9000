# A PSGI application with Plack::Middleware::Session (Debian's
# libplack-middleware-session-perl), its sessions in files
# (Plack::Session::Store::File under $SQ_PLACK_SESSIONS), served as FastCGI
# by plackup -s FCGI. The middleware reads the session when a request
# starts and stores it when it ends, with no lock: concurrent requests of
# one session lose updates. The cookie is plack_session.
use strict;
use warnings;
use Plack::Builder;
use Plack::Session::Store::File;
use Time::HiRes qw(usleep);

my $dir = $ENV{SQ_PLACK_SESSIONS} or die "SQ_PLACK_SESSIONS is not set\n";

my $app = sub {
    my $env     = shift;
    my $session = $env->{'psgix.session'};
    # Caddy's FastCGI transport puts the whole path in SCRIPT_NAME.
    my ($path) = $env->{REQUEST_URI} =~ m{^([^?]*)};
    if ($path eq '/start') {
        $session->{n} = 0;
    } elsif ($path eq '/incr') {
        # A writer: reads the counter, works 50 ms, writes counter+1 back.
        my $n = ($session->{n} // 0) + 1;
        usleep(50_000);
        $session->{n} = $n;
    }
    return [200, ['Content-Type' => 'text/plain'], [($session->{n} // 0) . "\n"]];
};

builder {
    enable 'Session', store => Plack::Session::Store::File->new(dir => $dir);
    $app;
};
