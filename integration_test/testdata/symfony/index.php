<?php
// A Symfony HttpFoundation application (Debian's
// php-symfony-http-foundation) keeping its sessions in redis with
// RedisSessionHandler, which takes no lock: concurrent requests of one
// session read the same data and the last write wins. The session cookie is
// PHP's PHPSESSID, as NativeSessionStorage leaves it.
require_once 'Symfony/Component/HttpFoundation/autoload.php';

use Symfony\Component\HttpFoundation\Request;
use Symfony\Component\HttpFoundation\Response;
use Symfony\Component\HttpFoundation\Session\Session;
use Symfony\Component\HttpFoundation\Session\Storage\Handler\RedisSessionHandler;
use Symfony\Component\HttpFoundation\Session\Storage\NativeSessionStorage;

$redis = new \Redis();
$redis->connect(getenv('REDIS_SOCKET'));
$session = new Session(new NativeSessionStorage([], new RedisSessionHandler($redis)));
$request = Request::createFromGlobals();
$request->setSession($session);
$session->start();

switch ($request->getPathInfo()) {
    case '/start':
        $session->set('n', 0);
        break;
    case '/incr':
        // A writer: reads the counter, works 50 ms, writes counter+1 back.
        $n = $session->get('n', 0) + 1;
        usleep(50000);
        $session->set('n', $n);
        break;
}
$body = $session->get('n', 0) . "\n";
$session->save();
(new Response($body, 200, ['Content-Type' => 'text/plain']))->send();
