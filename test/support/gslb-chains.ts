import type { FakeRecord } from './fake-upstream.js';

/**
 * Kakao's shared GSLB zone as public DNS answers it: Daum, Tistory and PotPlayer live in
 * kgslb.com beside KakaoTalk's own labels; a name outside kakao.com reaches KakaoTalk only
 * through a CNAME into a katalk- label.
 */
export const KAKAO_GSLB_CHAINS: Record<string, FakeRecord[]> = {
  'www.daum.net': [{ type: 'CNAME', value: 'www-daum-uj2suuqw.kgslb.com' }],
  'www-daum-uj2suuqw.kgslb.com': [{ type: 'A', value: '211.249.220.24' }],
  'jvvp.tistory.com': [{ type: 'CNAME', value: 'wildcard-tistory-fz0x1pwf.kgslb.com' }],
  'wildcard-tistory-fz0x1pwf.kgslb.com': [{ type: 'A', value: '211.249.222.33' }],
  'p1-play.kgslb.com': [{ type: 'A', value: '211.249.221.10' }],
  'katalk.kakao.com': [{ type: 'CNAME', value: 'katalk-fo6ld96d.kgslb.com' }],
  'katalk-fo6ld96d.kgslb.com': [{ type: 'A', value: '211.249.219.27' }],
  'chat.partner-gateway.example': [{ type: 'CNAME', value: 'katalk-fo6ld96d.kgslb.com' }],
};
