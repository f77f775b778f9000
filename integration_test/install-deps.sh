#!/bin/bash
# Installs the Debian 12 packages that the real-backend integration tests
# drive: PHP-FPM with phpredis, redis-server, a Perl FastCGI stack with
# CGI::Session, and the real frameworks the tests front: Laravel 8 and
# Symfony's HttpFoundation (Debian wires their autoloaders under
# /usr/share/php), and Plack with Plack::Middleware::Session, served as
# FastCGI by Plack::Handler::FCGI. Idempotent: it does nothing (not even
# `apt-get update`) when everything is already installed. Run as root.
#
# The tests start their own redis-server, php-fpm and Perl processes on unix
# sockets in a temp dir, so the packages' system services must not be
# started: while installing, a policy-rc.d that answers 101 ("action
# forbidden") keeps invoke-rc.d and deb-systemd-invoke from starting them,
# and on a systemd machine the units of the servers installed here are
# disabled so they do not start at the next boot either.
set -euo pipefail

packages=(
	php-fpm
	php-cli
	php-redis
	redis-server
	perl
	libcgi-pm-perl
	libcgi-fast-perl
	libcgi-session-perl
	libfcgi-perl
	php-laravel-framework
	php-symfony-http-foundation
	libplack-perl
	libplack-middleware-session-perl
)

missing=()
for p in "${packages[@]}"; do
	# php-fpm, php-cli and php-redis are Debian's default-version packages
	# (they depend on php8.2-*), so checking the names we install keeps the
	# check right whatever PHP version the release ships.
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q '^install ok installed$'; then
		missing+=("$p")
	fi
done

if [ "${#missing[@]}" -eq 0 ]; then
	echo "install-deps: all integration test packages are installed"
	exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
	echo "install-deps: missing packages: ${missing[*]}; run this script as root" >&2
	exit 1
fi

echo "install-deps: installing ${missing[*]}"

policy=/usr/sbin/policy-rc.d
backup=
if [ -e "$policy" ]; then
	backup=$(mktemp)
	cp -p "$policy" "$backup"
fi
restore_policy() {
	if [ -n "$backup" ]; then
		mv -f "$backup" "$policy"
	else
		rm -f "$policy"
	fi
}
trap restore_policy EXIT
printf '#!/bin/sh\n# Written by integration_test/install-deps.sh while it installs.\nexit 101\n' >"$policy"
chmod 755 "$policy"

export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends "${missing[@]}"

if [ -d /run/systemd/system ]; then
	units=()
	for p in "${missing[@]}"; do
		case "$p" in
		redis-server) units+=(redis-server.service) ;;
		php-fpm) units+=($(systemctl list-unit-files --no-legend 'php*-fpm.service' | awk '{print $1}')) ;;
		esac
	done
	if [ "${#units[@]}" -gt 0 ]; then
		systemctl disable --quiet "${units[@]}"
	fi
fi
