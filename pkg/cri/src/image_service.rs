//! ImageService: UNIMPLEMENTED (instrumented, with the method's name) until the image capability lands.

use k8s_cri::v1 as cri;
use k8s_cri::v1::image_service_server::ImageService;
use tonic::{Request, Response, Status};

use crate::ImageApi;

macro_rules! image_service {
    ($($name:ident($req:ident) -> $resp:ident = $method:literal;)*) => {
        #[tonic::async_trait]
        impl ImageService for ImageApi {
            $(
                async fn $name(
                    &self,
                    request: Request<cri::$req>,
                ) -> Result<Response<cri::$resp>, Status> {
                    self.shared.unimplemented($method, request).await
                }
            )*
        }
    };
}

image_service! {
    list_images(ListImagesRequest) -> ListImagesResponse = "ListImages";
    image_status(ImageStatusRequest) -> ImageStatusResponse = "ImageStatus";
    pull_image(PullImageRequest) -> PullImageResponse = "PullImage";
    remove_image(RemoveImageRequest) -> RemoveImageResponse = "RemoveImage";
    image_fs_info(ImageFsInfoRequest) -> ImageFsInfoResponse = "ImageFsInfo";
}
