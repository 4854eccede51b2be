//! glommio misjudges polled-I/O support when the first file it opens on a device is
//! empty; the backend works around it. Every read after a write must succeed.
use storage::io::{Backend, BackendFile};

#[test]
fn read_after_write_on_a_fresh_file() {
    glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
        .spawn(|| async {
            let dir = std::env::temp_dir().join(format!("dmaprobe-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            let b = storage::io::dma::DmaBackend;
            let f = b.create(&dir.join("a")).await.unwrap();
            assert_eq!(f.read_at(0, 65536).await.unwrap().len(), 0);
            f.allocate(65536).await.unwrap();
            let mut buf = f.alloc(4096);
            buf.as_mut().fill(7);
            assert_eq!(f.write_at(std::rc::Rc::new(buf), 0).await.unwrap(), 4096);
            let read = f.read_at(0, 65536).await.unwrap();
            assert_eq!(read.len(), 4096);
            assert!(read.iter().all(|b| *b == 7));
            f.punch_hole(0, 4096).await.unwrap();
            assert!(f.read_at(0, 4096).await.unwrap().iter().all(|b| *b == 0));
            std::fs::remove_dir_all(&dir).unwrap();
        })
        .unwrap()
        .join()
        .unwrap();
}
