<?php
// Writes laravel-vectors.json: cookies encrypted by Laravel's own
// EncryptCookies middleware (Debian's php-laravel-framework), for
// idgen/laravel_test.go. Run: php laravel-vectors.php > laravel-vectors.json
require_once 'Illuminate/autoload.php';

use Illuminate\Cookie\CookieValuePrefix;
use Illuminate\Cookie\Middleware\EncryptCookies;
use Illuminate\Encryption\Encrypter;
use Illuminate\Http\Request;
use Illuminate\Http\Response;
use Symfony\Component\HttpFoundation\Cookie;

// Fixed keys, so that the vectors can be checked again: never use them.
$keys = [
    'aes-256-cbc' => 'base64:' . base64_encode(str_repeat("\x01", 16) . str_repeat("\x02", 16)),
    'aes-128-cbc' => 'base64:' . base64_encode(str_repeat("\x03", 16)),
    'aes-256-gcm' => 'base64:' . base64_encode(str_repeat("\x04", 32)),
    'aes-128-gcm' => 'base64:' . base64_encode(str_repeat("\x05", 16)),
];

function rawKey($key) {
    return base64_decode(substr($key, strlen('base64:')));
}

// encryptedSetCookie runs a response that sets $name=$id through EncryptCookies,
// as Laravel's web middleware group does, and returns the Set-Cookie line.
function encryptedSetCookie(Encrypter $e, $name, $id) {
    $mw = new EncryptCookies($e);
    $response = $mw->handle(Request::create('/'), function () use ($name, $id) {
        $r = new Response('ok');
        $r->headers->setCookie(new Cookie($name, $id, 0, '/', null, false, true, false, 'lax'));
        return $r;
    });
    $cookies = $response->headers->getCookies();
    return (string) $cookies[0];
}

// readCookie is the value Laravel's EncryptCookies gives the application for
// a request carrying $name=$value (already URL-decoded, as PHP does).
function readCookie(Encrypter $e, $name, $value) {
    $mw = new EncryptCookies($e);
    $seen = null;
    $mw->handle(Request::create('/', 'GET', [], [$name => $value]), function ($request) use ($name, &$seen) {
        $seen = $request->cookies->get($name);
        return new Response('ok');
    });
    return $seen;
}

$out = ['keys' => $keys, 'vectors' => []];
$ids = ['Q2xkH8mYbH0eVt1x9lcMkVg4V2nJ4sY7Jz0aXw3K', 'a8Rk2Vq1Zc7Pn4Ld9Wm3Tb6Yh0Xf5Gs8Jj2Ue1Io'];
foreach ($keys as $cipher => $key) {
    $e = new Encrypter(rawKey($key), $cipher);
    foreach (['laravel_session', 'myapp_session'] as $name) {
        foreach ($ids as $id) {
            $line = encryptedSetCookie($e, $name, $id);
            preg_match('/^[^=]+=([^;]*)/', $line, $m);
            $value = rawurldecode($m[1]);
            if (readCookie($e, $name, $value) !== $id) {
                fwrite(STDERR, "Laravel does not read back its own cookie\n");
                exit(1);
            }
            $out['vectors'][] = [
                'cipher' => $cipher, 'cookie' => $name, 'id' => $id,
                'set_cookie' => $line, 'value' => $value,
            ];
        }
    }
}

// Values Laravel refuses (reads as no cookie), each with why.
$e = new Encrypter(rawKey($keys['aes-256-cbc']), 'aes-256-cbc');
$good = $out['vectors'][0]['value'];
$payload = json_decode(base64_decode($good), true);
$bad = [];
$tamper = $payload; $tamper['mac'] = str_repeat('0', 64);
$bad['mac'] = base64_encode(json_encode($tamper, JSON_UNESCAPED_SLASHES));
$tamper = $payload; $tamper['value'] = base64_encode(str_repeat("\0", 64));
$bad['value changed, mac kept'] = base64_encode(json_encode($tamper, JSON_UNESCAPED_SLASHES));
$bad['truncated'] = substr($good, 0, 200);
$bad['no prefix'] = $e->encrypt('Q2xkH8mYbH0eVt1x9lcMkVg4V2nJ4sY7Jz0aXw3K', false);
$bad['prefix of another cookie'] = $e->encrypt(CookieValuePrefix::create('XSRF-TOKEN', $e->getKey()) . 'Q2xkH8mYbH0eVt1x9lcMkVg4V2nJ4sY7Jz0aXw3K', false);
$other = new Encrypter(str_repeat("\x09", 32), 'aes-256-cbc');
$bad['other key'] = $other->encrypt(CookieValuePrefix::create('laravel_session', $other->getKey()) . 'Q2xkH8mYbH0eVt1x9lcMkVg4V2nJ4sY7Jz0aXw3K', false);
$bad['bare session ID'] = 'Q2xkH8mYbH0eVt1x9lcMkVg4V2nJ4sY7Jz0aXw3K';
$bad['not base64 JSON'] = base64_encode('{"iv":');
foreach ($bad as $why => $value) {
    $read = readCookie($e, 'laravel_session', $value);
    if ($read !== null) {
        fwrite(STDERR, "Laravel accepts the bad cookie '$why'\n");
        exit(1);
    }
    $out['refused'][] = ['why' => $why, 'cipher' => 'aes-256-cbc', 'cookie' => 'laravel_session', 'value' => $value];
}

// Re-encodings of a good cookie that Laravel still reads as the session:
// PHP's base64_decode and json_decode are lenient, and a client may send
// them to get its requests past the queue.
$lenient = [];
$lenient['json whitespace and key order'] = base64_encode("{ \"tag\" : \"\", \"mac\":\"{$payload['mac']}\",\n\"value\":\"{$payload['value']}\", \"iv\":\"{$payload['iv']}\" }");
$lenient['json escapes'] = base64_encode(str_replace(['"iv"', '/'], ['"\u0069v"', '\/'], json_encode($payload, JSON_UNESCAPED_SLASHES)));
$lenient['duplicate keys, last wins'] = base64_encode('{"iv":"AAAA","mac":"x",' . substr(json_encode($payload, JSON_UNESCAPED_SLASHES), 1));
$lenient['extra keys'] = base64_encode('{"x":[1,{"y":null}],' . substr(json_encode($payload, JSON_UNESCAPED_SLASHES), 1));
$lenient['base64 without padding, with junk'] = '*' . rtrim(chunk_split(rtrim($good, '='), 7, '.'), '.');
$tamper = $payload; $tamper['tag'] = false;
$lenient['tag false'] = base64_encode(json_encode($tamper, JSON_UNESCAPED_SLASHES));
$tamper = $payload; unset($tamper['tag']);
$lenient['no tag'] = base64_encode(json_encode($tamper, JSON_UNESCAPED_SLASHES));
foreach ($lenient as $why => $value) {
    $read = readCookie($e, 'laravel_session', $value);
    if ($read !== 'Q2xkH8mYbH0eVt1x9lcMkVg4V2nJ4sY7Jz0aXw3K') {
        fwrite(STDERR, "Laravel refuses the lenient cookie '$why'\n");
        exit(1);
    }
    $out['lenient'][] = ['why' => $why, 'cipher' => 'aes-256-cbc', 'cookie' => 'laravel_session', 'id' => $read, 'value' => $value];
}
echo json_encode($out, JSON_PRETTY_PRINT | JSON_UNESCAPED_SLASHES), "\n";
